/**
 * The ALSA binding over alsa-utils with test-only PCMs (HOME is a temp dir holding the .asoundrc):
 * capture from a `file` PCM returns the infile's samples exactly, playback into a `file` PCM writes
 * exactly the samples given, and a tool that dies is restarted.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { AlsaAudioBinding, alsaToFloat, floatToAlsa } from '../../firmware/audio/alsa-binding.js';

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
