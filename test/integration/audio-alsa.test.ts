/**
 * The ALSA binding over alsa-utils with test-only PCMs (HOME is a temp dir holding the .asoundrc):
 * capture from a `file` PCM returns the infile's samples exactly, playback into a `file` PCM writes
 * exactly the samples given, and a tool that dies is restarted.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { AlsaAudioBinding, alsaToFloat, floatToAlsa } from '../../firmware/audio/alsa-binding.js';
import { CardRateMatcher } from '../../firmware/audio/card-rate-matcher.js';

const skip =
  spawnSync('arecord', ['--version']).status === 0
    ? false
    : 'alsa-utils not installed (apt-get install alsa-utils)';

function setup(): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-alsa-'));
  writeFileSync(
    join(dir, '.asoundrc'),
    [
      `pcm.filecap { type file slave.pcm null file "/dev/null" infile "${dir}/in.raw" format raw }`,
      `pcm.fileplay { type file slave.pcm null file "${dir}/out.raw" format raw }`,
      '',
    ].join('\n'),
  );
  return { dir, env: { ...process.env, HOME: dir } };
}

t.test('sample format conversions are exact for every card format', async (t) => {
  const src = new Float32Array([0, 0.5, -0.5, -1, 0.25, 1 - 1 / 8388608]);
  for (const f of ['S16_LE', 'S24_3LE', 'S24_LE', 'S32_LE', 'FLOAT_LE'] as const) {
    const b = Buffer.alloc(src.length * (f === 'S16_LE' ? 2 : f === 'S24_3LE' ? 3 : 4));
    floatToAlsa(f, src, src.length, b);
    const back = new Float32Array(src.length);
    alsaToFloat(f, b, src.length, back);
    const lsb = f === 'S16_LE' ? 1 / 32768 : 1 / 8388608;
    t.ok(
      back.every((v, i) => Math.abs(v - src[i]!) <= lsb),
      `${f} round trip`,
    );
  }
});

t.test('capture from an .asoundrc file PCM is byte-exact', { skip }, async (t) => {
  const { dir, env } = setup();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const frames = 4800;
  const raw = Buffer.alloc(frames * 2 * 3);
  for (let i = 0; i < frames * 2; i++) raw.writeIntLE(((i * 7919) % 16777216) - 8388608, i * 3, 3);
  writeFileSync(join(dir, 'in.raw'), raw);
  const alsa = new AlsaAudioBinding({
    logger: createMemoryLogger(),
    format: 'S24_3LE',
    periodTimeUs: 1000,
    bufferTimeUs: 4000,
    env,
    maxRestarts: 0,
  });
  const got: number[] = [];
  const cap = alsa.openCapture({ device: 'filecap', channels: 2, periodFrames: 48 });
  await new Promise<void>((resolve) => {
    cap.onData((s, n) => {
      for (let i = 0; i < n * 2; i++) got.push(s[i]!);
      if (got.length >= frames * 2) resolve();
    });
    cap.onError(() => resolve());
    setTimeout(resolve, 10000).unref();
  });
  await cap.close();
  const expect = new Float32Array(frames * 2);
  alsaToFloat('S24_3LE', raw, frames * 2, expect);
  t.ok(got.length >= frames * 2, `captured ${got.length / 2} frames`);
  let diff = 0;
  for (let i = 0; i < frames * 2; i++) if (got[i] !== expect[i]) diff++;
  t.equal(diff, 0, 'every captured sample equals the infile');
});

t.test('playback into an .asoundrc file PCM writes exactly the samples given', { skip }, async (t) => {
  const { dir, env } = setup();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const alsa = new AlsaAudioBinding({
    logger: createMemoryLogger(),
    format: 'S16_LE',
    periodTimeUs: 1000,
    bufferTimeUs: 4000,
    env,
    maxRestarts: 0,
  });
  const pb = alsa.openPlayback({ device: 'fileplay', channels: 2, periodFrames: 48 });
  const frames = 4800;
  const src = new Float32Array(frames * 2);
  for (let i = 0; i < src.length; i++) src[i] = (((i * 31) % 65536) - 32768) / 32768;
  for (let f = 0; f < frames; f += 480) pb.write(src.subarray(f * 2, (f + 480) * 2), 480);
  await pb.close();
  const out = readFileSync(join(dir, 'out.raw'));
  const expect = Buffer.alloc(src.length * 2);
  floatToAlsa('S16_LE', src, src.length, expect);
  t.ok(
    out.length >= expect.length && out.length <= expect.length + 480 * 4,
    `wrote ${out.length / 4} frames`,
  );
  t.ok(out.subarray(0, expect.length).equals(expect), 'file holds exactly the samples written');
  t.ok(
    out.subarray(expect.length).every((b) => b === 0),
    'aplay pads the last period with silence only',
  );
});

t.test('a tool that dies is restarted and reported', async (t) => {
  const alsa = new AlsaAudioBinding({
    logger: createMemoryLogger(),
    format: 'S16_LE',
    periodTimeUs: 1000,
    bufferTimeUs: 4000,
    arecordPath: 'false',
    restartMs: 10,
    maxRestarts: 3,
  });
  const cap = alsa.openCapture({ device: 'x', channels: 2, periodFrames: 48 });
  const errors: string[] = [];
  cap.onError((e) => errors.push((e as Error & { code?: string }).code ?? ''));
  const end = Date.now() + 10000;
  while (errors.length < 4 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  t.equal(cap.restarts, 3, 'restarted up to the limit');
  t.same(errors, ['AUDIO_ERR_DEVICE', 'AUDIO_ERR_DEVICE', 'AUDIO_ERR_DEVICE', 'AUDIO_ERR_DEVICE']);
  await cap.close();
});

t.test('RX drift loop through the ALSA binding steers on the queue read from procfs', async (t) => {
  // No sound card here, so the kernel is simulated in virtual time: a substream status file under
  // a private procfs tree, for a card whose crystal is off by `ppm` and an aplay that moves what
  // the pipe holds into the card's ring while it has room. The tool itself is a real process
  // reading the real pipe (`cat`), found by its pid; the status parsing, the queue estimate, the
  // start-up trim and the drift loop are the binding's and the engine's own.
  for (const ppm of [300, -300]) {
    const dir = mkdtempSync(join(tmpdir(), 'qperiph-alsa-q-'));
    const sub = join(dir, 'asound', 'card1', 'pcm0p', 'sub0');
    mkdirSync(sub, { recursive: true });
    mkdirSync(join(dir, 'asound', 'card0', 'pcm0p', 'sub0'), { recursive: true });
    writeFileSync(join(dir, 'asound', 'card0', 'pcm0p', 'sub0', 'status'), 'closed\n');
    writeFileSync(join(sub, 'status'), 'closed\n');
    let now = 0;
    const logger = createMemoryLogger();
    const alsa = new AlsaAudioBinding({
      logger,
      format: 'S16_LE',
      periodTimeUs: 1000,
      bufferTimeUs: 8000,
      aplayPath: 'cat',
      maxRestarts: 0,
      procRoot: dir,
      now: () => now,
    });
    const pb = alsa.openPlayback({ device: 'hw:1,0', channels: 2, periodFrames: 48 });
    const pid = pb.toolPid!;
    t.ok(pid > 0, `the tool runs (pid ${pid})`);
    const m = new CardRateMatcher({ channels: 2, targetFrames: pb.minQueueFrames!, blockFrames: 48 });
    const block = new Float32Array(96).fill(0.25);
    const rate = 48 * (1 + ppm / 1e6);
    const ring = 384;
    let written = 0;
    let appl = 0;
    let hw = 0;
    let running = false;
    let startMs = 0;
    let underruns = 0;
    const startupMs = ppm > 0 ? 0 : 300;
    let queueAt2s: number | null = null;
    let steered = 0;
    let minQ = Infinity;
    let maxQ = 0;
    const ppmSeen: number[] = [];
    const write = (x: Float32Array, n: number): void => {
      const trimmed = pb.startTrimmedFrames;
      pb.write(x, n);
      // What reached the pipe (a start-up trim drops the block instead).
      if (pb.startTrimmedFrames === trimmed) written += n;
    };
    const seconds = 60;
    for (now = 0; now < seconds * 1000; now++) {
      // The kernel at this millisecond: aplay has moved what the pipe holds into the ring while
      // it has room, then the card plays whole periods once started.
      // (The second run's aplay takes 300 ms to open the card: the pipe fills meanwhile.)
      if (now >= startupMs) appl = Math.max(appl, Math.min(written, hw + ring));
      if (running) {
        const pos = Math.floor(((now - startMs) * rate) / 48) * 48;
        if (pos > appl) {
          underruns++;
          running = false;
          hw = appl;
        } else hw = pos;
      }
      if (!running && appl - hw >= 96) {
        running = true;
        startMs = now - hw / rate;
      }
      // procfs is always current: publish every millisecond of the simulation.
      if (now >= 5 + startupMs)
        writeFileSync(
          join(sub, 'status'),
          [
            `state: ${running ? 'RUNNING' : 'PREPARED'}`,
            `owner_pid   : ${pid}`,
            'trigger_time: 4242.000000000',
            'tstamp      : 4243.000000000',
            `delay       : ${appl - hw}`,
            `avail       : ${ring - (appl - hw)}`,
            `avail_max   : ${ring}`,
            '-----',
            `hw_ptr      : ${hw}`,
            `appl_ptr    : ${appl}`,
            '',
          ].join('\n'),
        );
      // The media clock delivers 48 frames each millisecond.
      const q = pb.queuedFrames!();
      if (q === null) write(block, 48);
      else {
        steered++;
        m.feed(block, 48, q, write);
      }
      if (now === 2000) queueAt2s = written - hw;
      if (now > (seconds / 2) * 1000) {
        ppmSeen.push(m.tracker.ppm);
        const real = written - hw;
        minQ = Math.min(minQ, real);
        maxQ = Math.max(maxQ, real);
      }
    }
    await pb.close();
    rmSync(dir, { recursive: true, force: true });
    t.ok(
      logger.records.some((r) => r.event === 'alsa_queue_found' && String(r['status']).includes('card1')),
      `${ppm} ppm: found the substream the tool owns (card1, not the closed card0)`,
    );
    t.ok(
      steered > seconds * 990,
      `${ppm} ppm: ${steered} of ${seconds * 1000} blocks steered on the procfs queue`,
    );
    t.equal(underruns, 0, `${ppm} ppm: no card underrun in ${seconds} s`);
    const learned = ppmSeen.reduce((a, b) => a + b, 0) / ppmSeen.length;
    const expect = (1 / (1 + ppm * 1e-6) - 1) * 1e6;
    t.ok(
      Math.abs(learned - expect) < 5,
      `${ppm} ppm: loop learned ${learned.toFixed(1)} ppm (expect ${expect.toFixed(1)})`,
    );
    t.ok(minQ > 0 && maxQ < 6 * 48, `${ppm} ppm: real queue held in ${minQ}..${maxQ} frames`);
    if (startupMs)
      t.ok(
        queueAt2s !== null && queueAt2s <= 4 * 48,
        `slow start: what piled up in the pipe was trimmed at the start (queue ${queueAt2s} frames at 2 s; binding trimmed ${pb.startTrimmedFrames}, matcher ${m.startTrimmed})`,
      );
    else t.equal(pb.startTrimmedFrames + m.startTrimmed, 0, 'quick start: nothing trimmed');
  }
});

t.test('without a procfs entry the binding says it cannot tell, once, and plays uncompensated', async (t) => {
  let now = 0;
  const logger = createMemoryLogger();
  const alsa = new AlsaAudioBinding({
    logger,
    format: 'S16_LE',
    periodTimeUs: 1000,
    bufferTimeUs: 8000,
    aplayPath: 'cat',
    maxRestarts: 0,
    procRoot: mkdtempSync(join(tmpdir(), 'qperiph-alsa-none-')),
    now: () => now,
  });
  const pb = alsa.openPlayback({ device: 'pulse', channels: 2, periodFrames: 48 });
  const block = new Float32Array(96);
  let known = 0;
  for (now = 0; now < 8000; now++) {
    if (pb.queuedFrames!() !== null) known++;
    pb.write(block, 48);
  }
  t.equal(known, 0, 'queuedFrames() stayed null for 8 s');
  await pb.close();
  t.equal(logger.records.filter((r) => r.event === 'alsa_queue_unknown').length, 1, 'logged once');
  t.equal(pb.startTrimmedFrames, 0, 'nothing dropped');
});
