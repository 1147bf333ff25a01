/**
 * Audio engine benchmark (`npm run bench:audio`). Prints figures, asserts nothing.
 *
 * 1. Pacing, Q-LAN (16 ch float32, 333 us) and AES67 (2 ch L24, 1 ms): packets/s, |send - ideal|
 *    p50/p99/max on the wire (tshark on lo, when root and tshark are available; otherwise the
 *    worker's own send-time log), share of back-to-back packets (gap < 25% of the period); idle, and
 *    with an HTTP server in this process under 200 req/s from a second process.
 * 2. CPU of one 16 ch Q-LAN stream TX + RX in this process (a bare RtpReceiver, then the
 *    engine's receive path: receive worker, mix, ring, card) vs GStreamer doing the same
 *    (audiotestsrc ! rtpL24pay ! udpsink + udpsrc ! rtpjitterbuffer ! rtpL24depay ! fakesink).
 * 3. End-to-end latency: virtual capture (1 ms blocks) -> RTP -> jitter buffer -> virtual playback.
 * 4. Drift: buffer slips at +-100 ppm card error over AUDIO_BENCH_DRIFT_S (default 600) seconds.
 *
 * Env: AUDIO_BENCH_RX_THREAD=main runs the engines' receive on the main thread (as before the
 * receive worker) for comparison. AUDIO_BENCH_S (seconds per pacing run, default 10); AUDIO_BENCH_PARTS (comma list of
 * pacing,rt,load,loadrt,cpu,latency,lowlat,drift; default all but lowlat, the low-latency runs of latency alone). `loadrt` is `load` with the worker at SCHED_FIFO. `rt` repeats the idle pacing runs with the
 * sender worker at SCHED_FIFO 10 (needs root or CAP_SYS_NICE). The cpu part runs our stream with the
 * sender busy-waiting (as the runtime) and sleeping only, each with its wire pacing (tshark), and
 * GStreamer with its wire pacing. AUDIO_BENCH_BUSY_WAIT=0: the pacing runs' sender sleeps only;
 * AUDIO_BENCH_LEAD_US: the senders' minimum busy-wait lead (default 100). The low-latency runs
 * with fine timers (virtual cards waking per period, receive tick 333 us; also at SCHED_FIFO as
 * root) take AUDIO_BENCH_LL_TX and AUDIO_BENCH_LL_QUEUE (frames, default 32 each) and
 * AUDIO_BENCH_LL_DELAY_MS (default 1).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSystemClock, FakeClock } from '../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { createAudioDatagramBinding } from '../../firmware/audio/audio-datagram.js';
import { VirtualAudioBinding } from '../../firmware/audio/audio-binding.js';
import { CardRateMatcher } from '../../firmware/audio/card-rate-matcher.js';
import { DriftTracker, Resampler } from '../../firmware/audio/dsp.js';
import { createFreeRunningClock, type MediaClock } from '../../firmware/audio/media-clock.js';
import { rtpTimestampAt } from '../../firmware/audio/media-timeline.js';
import { RtpReceiver } from '../../firmware/audio/receiver.js';
import { qlanFormat, QLAN_PAYLOAD_TYPE, type AudioFormat } from '../../firmware/audio/rtp-codec.js';
import { RtpSender, type SenderCounters } from '../../firmware/audio/sender.js';
import { AudioEngine } from '../../firmware/audio/engine.js';
import type { BoardConfig } from '../../firmware/config/board-types.js';

const SECONDS = Number(process.env['AUDIO_BENCH_S'] ?? 10);
const DRIFT_S = Number(process.env['AUDIO_BENCH_DRIFT_S'] ?? 600);
const SETTLE_S = Number(process.env['AUDIO_BENCH_SETTLE_S'] ?? 5);
/** Pacing runs: the sender busy-waits before each deadline (1, default as the runtime) or sleeps only (0). */
const BUSY_WAIT = process.env['AUDIO_BENCH_BUSY_WAIT'] !== '0';
/** The sender's minimum busy-wait lead, us (AUDIO_BENCH_LEAD_US; default the sender's own, 100). */
const LEAD_US = process.env['AUDIO_BENCH_LEAD_US'] ? Number(process.env['AUDIO_BENCH_LEAD_US']) : undefined;
/** The fine-timer low-latency runs: TX ring and card queue (frames), playout delay (ms). */
const LL_TX = Number(process.env['AUDIO_BENCH_LL_TX'] ?? 32);
const LL_QUEUE = Number(process.env['AUDIO_BENCH_LL_QUEUE'] ?? 32);
const LL_DELAY_MS = Number(process.env['AUDIO_BENCH_LL_DELAY_MS'] ?? 1);
/** Where the engines' receive runs: the worker (default, as in the runtime) or 'main' (before). */
const RX_THREAD: 'worker' | 'main' = process.env['AUDIO_BENCH_RX_THREAD'] === 'main' ? 'main' : 'worker';
const clock = createMediaClock();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const isRoot = process.getuid?.() === 0;
const haveTshark = spawnSync('sh', ['-c', 'command -v tshark']).status === 0;
const haveGst = spawnSync('sh', ['-c', 'command -v gst-launch-1.0']).status === 0;

function createMediaClock(): MediaClock {
  return createFreeRunningClock();
}

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : NaN;
}

function progress(label: string, seconds: number): () => void {
  let n = 0;
  process.stderr.write(`${label} `);
  const iv = setInterval(() => process.stderr.write(++n % 10 === 0 ? `${n}s` : '.'), 1000);
  return () => {
    clearInterval(iv);
    process.stderr.write(` done (${seconds}s)\n`);
  };
}

/**
 * Deviation of each packet from its ideal send time: the RTP timestamp says when (in media time)
 * it was due, so skipped packets do not shift the grid; the median offset is removed.
 */
function deviations(timesUs: number[], rtpTs: number[], periodUs: number): { dev: number[]; b2b: number } {
  const t0 = timesUs[0]!;
  const ts0 = rtpTs[0]!;
  const raw = timesUs.map((t, i) => t - t0 - (((rtpTs[i]! - ts0) >>> 0) * 1e6) / 48000);
  const med = [...raw].sort((a, b) => a - b)[Math.floor(raw.length / 2)]!;
  const dev = raw.map((d) => Math.abs(d - med)).sort((a, b) => a - b);
  let b2b = 0;
  for (let i = 1; i < timesUs.length; i++) if (timesUs[i]! - timesUs[i - 1]! < periodUs * 0.25) b2b++;
  return { dev, b2b: b2b / Math.max(1, timesUs.length - 1) };
}

async function startTshark(port: number, file: string): Promise<ChildProcess | null> {
  if (!isRoot || !haveTshark) return null;
  const p = spawn('tshark', ['-i', 'lo', '-f', `udp dst port ${port}`, '-w', file, '-q'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve) => {
    p.stderr.on('data', (d: Buffer) => {
      if (d.toString().includes('Capturing on')) resolve();
    });
    setTimeout(resolve, 15000).unref();
  });
  await sleep(300);
  return p;
}

/** Send time (us) and RTP timestamp of each RTP packet to `port` in a pcap file. */
function readPcapRtp(pcap: string, port: number): { times: number[]; stamps: number[] } {
  const r = spawnSync(
    'tshark',
    [
      '-r',
      pcap,
      '-d',
      `udp.port==${port},rtp`,
      '-T',
      'fields',
      '-e',
      'frame.time_epoch',
      '-e',
      'rtp.timestamp',
    ],
    { encoding: 'utf8', maxBuffer: 1 << 28 },
  );
  const times: number[] = [];
  const stamps: number[] = [];
  for (const line of r.stdout.trim().split('\n')) {
    const [a, b] = line.split('\t');
    if (!a || !b) continue;
    times.push(Number(a) * 1e6);
    stamps.push(Number(b));
  }
  return { times, stamps };
}

/**
 * Wire pacing of whatever `fn` sends to `port` while it runs (tshark on lo; null without root or
 * tshark): |send - ideal| p50/p99 and the share of back-to-back packets, as in the pacing runs.
 */
async function wirePacing(port: number, periodUs: number, fn: () => Promise<void>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-bench-'));
  const pcap = join(dir, 'cap.pcap');
  const ts = await startTshark(port, pcap);
  try {
    await fn();
  } finally {
    if (ts) {
      ts.kill('SIGINT');
      await new Promise((r) => ts.once('exit', r));
    }
  }
  if (!ts) {
    rmSync(dir, { recursive: true, force: true });
    return 'pacing not measured (needs root and tshark)';
  }
  const { times, stamps } = readPcapRtp(pcap, port);
  rmSync(dir, { recursive: true, force: true });
  if (times.length < 2) return 'pacing: no packets captured';
  const { dev, b2b } = deviations(times, stamps, periodUs);
  return `wire pacing |send - ideal| p50 ${pct(dev, 0.5).toFixed(1)} us, p99 ${pct(dev, 0.99).toFixed(1)} us, max ${(dev[dev.length - 1] ?? NaN).toFixed(1)} us, back-to-back ${(b2b * 100).toFixed(2)}% (${times.length} packets)`;
}

async function pacingRun(
  name: string,
  format: AudioFormat,
  pt: number,
  port: number,
  rtPriority: number | null = null,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'qperiph-bench-'));
  const pcap = join(dir, 'cap.pcap');
  const sink = await sinkSocket(port);
  const ts = await startTshark(port, pcap);
  const packetsPerS = 48000 / format.framesPerPacket;
  const sender = new RtpSender({
    format,
    payloadType: pt,
    destination: { address: '127.0.4.2', port },
    bindAddress: '127.0.4.1',
    ssrc: 1,
    clock,
    lateLogPackets: Math.ceil(packetsPerS * SECONDS) + 10,
    rtPriority,
    busyWait: BUSY_WAIT,
    ...(LEAD_US !== undefined ? { leadUs: LEAD_US } : {}),
  });
  await sender.start();
  if (rtPriority)
    name += ` [SCHED_FIFO ${rtPriority}: ${sender.rt}${sender.rtError ? ` ${sender.rtError}` : ''}]`;
  const done = progress(`  ${name}`, SECONDS);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  await sender.stop();
  const wall = (performance.now() - t0) / 1000;
  done();
  const c = sender.counters();
  let times: number[];
  let stamps: number[];
  let source = 'worker send-call log (no root/tshark: not the wire)';
  if (ts) {
    ts.kill('SIGINT');
    await new Promise((r) => ts.once('exit', r));
    ({ times, stamps } = readPcapRtp(pcap, port));
    source = 'wire (tshark on lo)';
  } else {
    const log = sender.lateLog.subarray(0, c.sent);
    times = Array.from(log, (late, i) => (i * 1e6) / packetsPerS + late / 1000);
    stamps = Array.from(log, (_l, i) => i * format.framesPerPacket);
  }
  sink.close();
  rmSync(dir, { recursive: true, force: true });
  const { dev, b2b } = deviations(times, stamps, 1e6 / packetsPerS);
  console.log(
    `  ${name}: ${(c.sent / wall).toFixed(0)} packets/s (ideal ${packetsPerS.toFixed(0)}); |send - ideal| p50 ${pct(dev, 0.5).toFixed(1)} us, p99 ${pct(dev, 0.99).toFixed(1)} us, max ${(dev[dev.length - 1] ?? NaN).toFixed(1)} us; back-to-back ${(b2b * 100).toFixed(2)}%; late ${c.late}, skipped ${c.skipped}, busy ${c.bufferBusy}, DSCP ${c.dscp}; source: ${source}, ${times.length} packets`,
  );
}

async function sinkSocket(port: number): Promise<{ close(): void }> {
  const b = createAudioDatagramBinding();
  const s = b.createUdp4({ reuseAddr: true });
  s.onMessage(() => undefined);
  await s.bind(port, '127.0.4.2');
  return { close: () => void s.close() };
}

async function withHttpLoad<T>(fn: () => Promise<T>): Promise<T> {
  const server = http.createServer((_req, res) => {
    // A little work per request, like a JSON status route.
    const body = JSON.stringify({
      t: Date.now(),
      streams: Array.from({ length: 20 }, (_, i) => ({ i, peak: Math.random() })),
    });
    res.setHeader('content-type', 'application/json');
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.4.3', r));
  const port = (server.address() as { port: number }).port;
  const client = spawn(
    process.execPath,
    [
      '-e',
      `const http=require('http');let n=0;setInterval(()=>{for(let i=0;i<2;i++)http.get({host:'127.0.4.3',port:${port},path:'/api/status',agent:false},r=>{r.resume();n++});},10);setInterval(()=>process.stdout.write(n+'\\n'),1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let last = '0';
  client.stdout.on('data', (d: Buffer) => (last = d.toString().trim().split('\n').pop() ?? last));
  try {
    const r = await fn();
    console.log(`  (HTTP load: ${last} requests served)`);
    return r;
  } finally {
    client.kill();
    server.close();
  }
}

function procCpuS(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(parts[11]) + Number(parts[12])) / 100;
}

/**
 * One 16 ch Q-LAN stream, our sender to our bare receiver in this process: CPU of the whole
 * process, and the wire pacing in the same window. `leadUs` 0 turns the busy-wait off (the worker
 * sleeps until each deadline), to show what the spin costs and buys.
 */
async function oursCpu(port: number, busyWait: boolean): Promise<number> {
  const format = qlanFormat(16);
  let played = 0;
  const rx = new RtpReceiver({
    binding: createAudioDatagramBinding(),
    clock: createSystemClock(),
    mediaClock: clock,
    logger: createMemoryLogger(),
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    delayFrames: 96 * 5,
    paths: [{ bindAddress: '127.0.4.2', port, group: null }],
    sink: (_s, n) => (played += n),
  });
  await rx.start();
  const sender = new RtpSender({
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port },
    bindAddress: '127.0.4.1',
    ssrc: 2,
    clock,
    busyWait,
    ...(LEAD_US !== undefined ? { leadUs: LEAD_US } : {}),
  });
  const block = new Float32Array(48 * 16);
  for (let i = 0; i < block.length; i++) block[i] = Math.sin(i / 10) * 0.5;
  const feeder = setInterval(() => {
    while (sender.space() >= 48) sender.write(block, 48);
  }, 2);
  await sender.start();
  await sleep(500);
  let ours = 0;
  const label = `qperiph 16 ch Q-LAN TX+RX, sender ${busyWait ? 'busy-waits before each packet' : 'sleeps only (busyWait false)'}`;
  const pacing = await wirePacing(port, 1e6 / 3000, async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const done = progress(`  ${label}`, SECONDS);
    await sleep(SECONDS * 1000);
    done();
    const du = process.cpuUsage(c0);
    const wall = (performance.now() - t0) / 1000;
    ours = (du.user + du.system) / 1e6 / wall;
  });
  clearInterval(feeder);
  await sender.stop();
  await rx.close();
  console.log(
    `  ${label}: ${(ours * 100).toFixed(1)}% of one core (TX worker + RX + feeding, whole process); played ${played} frames; RX lost ${rx.counters().lost}; ${pacing}`,
  );
  return ours;
}

async function cpuRun(): Promise<void> {
  const ours = await oursCpu(24100, true);
  const oursSleep = await oursCpu(24106, false);
  await engineCpuRun();
  if (!haveGst) {
    console.log('  GStreamer: not installed, no comparison');
    return;
  }
  const gport = 24102;
  const rxg = spawn('gst-launch-1.0', [
    '-q',
    'udpsrc',
    `address=127.0.4.2`,
    `port=${gport}`,
    'caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=L24,channels=16,payload=96',
    '!',
    'rtpjitterbuffer',
    'latency=10',
    '!',
    'rtpL24depay',
    '!',
    'fakesink',
    'sync=false',
  ]);
  const txg = spawn('gst-launch-1.0', [
    '-q',
    'audiotestsrc',
    'is-live=true',
    'samplesperbuffer=16',
    '!',
    'audio/x-raw,format=S24BE,rate=48000,channels=16',
    '!',
    'rtpL24pay',
    'pt=96',
    'min-ptime=333333',
    'max-ptime=333333',
    '!',
    'udpsink',
    'host=127.0.4.2',
    `port=${gport}`,
  ]);
  await sleep(1500);
  let gst = 0;
  const gPacing = await wirePacing(gport, 1e6 / 3000, async () => {
    const g0 = procCpuS(rxg.pid!) + procCpuS(txg.pid!);
    const done2 = progress('  GStreamer 16 ch L24 333 us TX+RX', SECONDS);
    await sleep(SECONDS * 1000);
    done2();
    const g1 = procCpuS(rxg.pid!) + procCpuS(txg.pid!);
    gst = (g1 - g0) / SECONDS;
  });
  rxg.kill();
  txg.kill();
  console.log(
    `  GStreamer: ${(gst * 100).toFixed(1)}% of one core (audiotestsrc+rtpL24pay+udpsink, udpsrc+rtpjitterbuffer+rtpL24depay+fakesink); ${gPacing}`,
  );
  console.log(
    `  ratio qperiph / GStreamer: ${(ours / gst).toFixed(2)}x (busy-wait), ${(oursSleep / gst).toFixed(2)}x (sleep only)`,
  );
}

/**
 * The runtime's receive path: the same 16 ch stream into an AudioEngine (receive worker, mix,
 * ring, output gain and meters, card rate matcher, virtual card), whole process.
 */
async function engineCpuRun(): Promise<void> {
  const port = 24104;
  const sys = createSystemClock();
  const e = new AudioEngine({
    board: LAT_BOARD,
    audio: new VirtualAudioBinding({ clock: sys, record: false }),
    datagram: createAudioDatagramBinding(),
    clock: sys,
    mediaClock: clock,
    logger: createMemoryLogger(),
    lanA: '127.0.4.2',
    playbackChannels: 16,
    rxThread: RX_THREAD,
  });
  await e.start();
  await e.openRx({
    id: 'r',
    kind: 'qlan',
    channelMap: Array.from({ length: 16 }, (_, i) => i),
    source: { address: '127.0.4.2', port },
    delayMs: 10,
  });
  const format = qlanFormat(16);
  const sender = new RtpSender({
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port },
    bindAddress: '127.0.4.1',
    ssrc: 4,
    clock,
  });
  const block = new Float32Array(48 * 16);
  for (let i = 0; i < block.length; i++) block[i] = Math.sin(i / 10) * 0.5;
  const feeder = setInterval(() => {
    while (sender.space() >= 48) sender.write(block, 48);
  }, 2);
  await sender.start();
  await sleep(500);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const done = progress(
    `  qperiph engine 16 ch Q-LAN RX (receive in the ${e.rxThread} thread) + TX`,
    SECONDS,
  );
  await sleep(SECONDS * 1000);
  done();
  const du = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  const rc = e.list()[0]!.counters as { lost: number; late: number; received: number };
  clearInterval(feeder);
  await sender.stop();
  await e.stop();
  console.log(
    `  qperiph engine: ${(((du.user + du.system) / 1e6 / wall) * 100).toFixed(1)}% of one core (TX worker + engine RX in the ${e.rxThread} thread + mix + card, whole process); RX received ${rc.received}, lost ${rc.lost}, late ${rc.late}`,
  );
}

async function latencyRun(delayFrames: number, port: number): Promise<void> {
  const format = qlanFormat(2);
  const writtenAt = new Map<number, bigint>();
  const lat: number[] = [];
  let missing = 0;
  const rx = new RtpReceiver({
    binding: createAudioDatagramBinding(),
    clock: createSystemClock(),
    mediaClock: clock,
    logger: createMemoryLogger(),
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    delayFrames,
    tickMs: 0,
    paths: [{ bindAddress: '127.0.4.2', port, group: null }],
    sink: (s, _n, miss) => {
      if (miss) {
        missing++;
        return;
      }
      const idx = Math.round(s[0]! * 1e6);
      const at = writtenAt.get(idx);
      if (at !== undefined) {
        lat.push(Number(clock.nowNs() - at) / 1000);
        writtenAt.delete(idx);
      }
    },
  });
  await rx.start();
  const sender = new RtpSender({
    format,
    payloadType: QLAN_PAYLOAD_TYPE,
    destination: { address: '127.0.4.2', port },
    bindAddress: '127.0.4.1',
    ssrc: 3,
    clock,
    startDelayNs: 2_000_000n,
  });
  await sender.start();
  // Virtual capture: a 48-frame block whenever 1 ms of media time has passed (as a card's period).
  const block = new Float32Array(48 * 2);
  let frame = 0;
  const t0 = sender.timeline.anchor.firstDueNs - 1_000_000n;
  let stop = false;
  const cap = (): void => {
    if (stop) return;
    const due = Number(((clock.nowNs() - t0) * 48000n) / 1_000_000_000n);
    while (frame + 48 <= due) {
      for (let f = 0; f < 48; f++) {
        // Frame number encoded in the sample (every 16th frame starts a packet).
        block[f * 2] = ((frame + f) % 1_000_000) / 1e6;
        block[f * 2 + 1] = 0;
      }
      const now = clock.nowNs();
      for (let f = 0; f < 48; f += 16) writtenAt.set((frame + f) % 1_000_000, now);
      sender.write(block, 48);
      frame += 48;
    }
    setImmediate(cap);
  };
  const done = progress('  latency', SECONDS);
  cap();
  await sleep(SECONDS * 1000);
  stop = true;
  done();
  const c = sender.counters();
  await sender.stop();
  await rx.close();
  lat.sort((a, b) => a - b);
  console.log(
    `  end-to-end (capture block ready -> packet played): p50 ${(pct(lat, 0.5) / 1000).toFixed(3)} ms, p99 ${(pct(lat, 0.99) / 1000).toFixed(3)} ms, max ${((lat[lat.length - 1] ?? NaN) / 1000).toFixed(3)} ms over ${lat.length} packets; playout delay ${delayFrames / 48} ms; sender underruns ${c.underruns}, RX missing ${missing}, late ${rx.counters().late}`,
  );
  void rtpTimestampAt;
}

/** RX side: media-clock playout -> CardRateMatcher -> virtual card at +-100 ppm, in virtual time. */
function rxDriftRun(): void {
  for (const ppm of [100, -100]) {
    const fake = new FakeClock(0);
    const card = new VirtualAudioBinding({ clock: fake, ppm, record: false });
    const pb = card.openPlayback({ device: 'v', channels: 2, periodFrames: 48 });
    const m = new CardRateMatcher({ channels: 2, targetFrames: 144, blockFrames: 48 });
    const src = new Float32Array(96);
    let minQ = Infinity;
    let maxQ = 0;
    let sum = 0;
    let n = 0;
    for (let ms = 0; ms < DRIFT_S * 1000; ms++) {
      m.feed(src, 48, pb.queuedFrames!(), (x, f) => pb.write(x, f));
      fake.advance(1);
      if (ms >= 30_000) {
        const q = pb.queuedFrames!();
        minQ = Math.min(minQ, q);
        maxQ = Math.max(maxQ, q);
        sum += m.tracker.ppm;
        n++;
      }
    }
    const sl = pb.slips!();
    console.log(
      `  RX card ${ppm > 0 ? '+' : ''}${ppm} ppm over ${DRIFT_S} s: ${sl.underruns + sl.overruns + m.overflows} slips; card queue after 30 s ${minQ.toFixed(0)}..${maxQ.toFixed(0)} frames; learned ratio ${(sum / n).toFixed(2)} ppm`,
    );
  }
}

function driftRun(): void {
  for (const ppm of [100, -100]) {
    const e = ppm * 1e-6;
    const r = new Resampler(1, 4800);
    const tr = new DriftTracker(240);
    const blk = new Float32Array(48);
    const out = new Float32Array(48);
    let tNet = 0;
    let tCard = 0;
    let slips = 0;
    let minFill = Infinity;
    let maxFill = 0;
    for (let i = 0; i < 5; i++) r.push(blk, 48);
    while (tNet < DRIFT_S) {
      if (tNet <= tCard) {
        if (!r.push(blk, 48)) slips++;
        tNet += 0.001;
      } else {
        if (!r.pull(out, 48, tr.update(r.available, 0.001 / (1 + e)))) slips++;
        tCard += 0.001 / (1 + e);
        if (tCard > 30) {
          minFill = Math.min(minFill, r.available);
          maxFill = Math.max(maxFill, r.available);
        }
      }
    }
    console.log(
      `  ${ppm > 0 ? '+' : ''}${ppm} ppm over ${DRIFT_S} s: ${slips} slips; fill after settling ${minFill.toFixed(0)}..${maxFill.toFixed(0)} frames; loop step ${tr.ppm.toFixed(1)} ppm`,
    );
  }
}

const LAT_BOARD = {
  id: 'virtual',
  audio: {
    binding: 'virtual',
    capture: { device: 'virtual', channels: 2 },
    playback: { device: 'virtual', channels: 2 },
  },
} as unknown as BoardConfig;

/**
 * End to end through the whole runtime path, two AudioEngines on loopback: virtual capture card ->
 * input gain/meters -> TX drift loop + resampler -> sender worker -> UDP -> receiver -> jitter
 * buffer -> playout mix -> RX drift loop -> virtual playback card. Channel 0 carries each frame's
 * number, so the frame a played period starts with tells when it was captured: latency = when
 * the card starts playing it - the instant the capture card sampled it (its block became ready
 * one block later).
 */
async function engineLatencyRun(
  label: string,
  o: {
    block: number;
    txBufferFrames: number;
    playbackQueueFrames: number;
    delayMs: number;
    port: number;
    /** Cards wake per period (PeriodTicker) and the receive worker ticks every `rxTickUs`. */
    fineTimers?: { rxTickUs: number };
    /** SCHED_FIFO priority of the sender worker. */
    rtPriority?: number;
  },
): Promise<void> {
  const sys = createSystemClock();
  const WRAP = 1 << 20;
  const capturedMs = new Float64Array(WRAP).fill(NaN);
  let blockReadyMs = 0;
  let blockStart = -1;
  /** When each capture period was handed over (ms): shows how the card's timer delivers. */
  const readyLog: number[] = [];
  const periodWakes = o.fineTimers !== undefined;
  const capCard = new VirtualAudioBinding({
    clock: sys,
    periodWakes,
    generator: (frame, ch) => {
      if (ch === 0 && frame % o.block === 0) {
        blockReadyMs = sys.monotonicMs();
        blockStart = frame;
        if (readyLog.length < 200_000) readyLog.push(blockReadyMs);
      }
      if (ch === 0) capturedMs[frame % WRAP] = blockReadyMs - (blockStart + o.block - frame) / 48;
      return ch === 0 ? (frame % WRAP) / WRAP : 0;
    },
  });
  const lat: number[] = [];
  const playCard = new VirtualAudioBinding({
    clock: sys,
    record: false,
    periodWakes,
    playbackStartFrames: 2 * o.block,
    onPlay: (x, n, atMs) => {
      const v = x[0]!;
      if (!(v > 0.001 && v < 0.999) || n === 0) return;
      const at = capturedMs[Math.round(v * WRAP) % WRAP]!;
      if (Number.isFinite(at)) lat.push(atMs - at);
    },
  });
  const common = {
    board: LAT_BOARD,
    datagram: createAudioDatagramBinding(),
    clock: sys,
    mediaClock: clock,
    blockFrames: o.block,
    txBufferFrames: o.txBufferFrames,
    playbackQueueFrames: o.playbackQueueFrames,
    rxThread: RX_THREAD,
    ...(o.fineTimers ? { rxTickUs: o.fineTimers.rxTickUs } : {}),
    ...(o.rtPriority ? { senderRtPriority: o.rtPriority } : {}),
  };
  const txEngine = new AudioEngine({
    ...common,
    audio: capCard,
    logger: createMemoryLogger(),
    lanA: '127.0.4.1',
  });
  const rxEngine = new AudioEngine({
    ...common,
    audio: playCard,
    logger: createMemoryLogger(),
    lanA: '127.0.4.2',
  });
  await txEngine.start();
  await rxEngine.start();
  await rxEngine.openRx({
    id: 'r',
    kind: 'qlan',
    channelMap: [0, 1],
    source: { address: '127.0.4.2', port: o.port },
    delayMs: o.delayMs,
  });
  await txEngine.openTx({
    id: 't',
    kind: 'qlan',
    channelMap: [0, 1],
    destination: { address: '127.0.4.2', port: o.port },
  });
  const done = progress(`  ${label}`, SECONDS);
  // The drift loops bend rates by at most 0.1 %, so fills reach their targets gradually: settle.
  await sleep(SETTLE_S * 1000);
  lat.length = 0;
  readyLog.length = 0;
  await sleep(SECONDS * 1000);
  done();
  const txFill = (txEngine as unknown as { tx: Map<string, { senders: RtpSender[] }> }).tx
    .get('t')!
    .senders[0]!.fill();
  // Periods handed over in the same timer callback form one delivery.
  const gaps: number[] = [];
  let deliveries = 0;
  for (let i = 1; i < readyLog.length; i++) {
    const g = readyLog[i]! - readyLog[i - 1]!;
    if (g > 0.05) {
      gaps.push(g);
      deliveries++;
    }
  }
  gaps.sort((a, b) => a - b);
  const capture = `capture: ${readyLog.length} periods of ${(o.block / 48).toFixed(2)} ms in ${deliveries + 1} deliveries (${(readyLog.length / (deliveries + 1)).toFixed(2)} per delivery), interval p50 ${pct(gaps, 0.5).toFixed(3)} ms, p99 ${pct(gaps, 0.99).toFixed(3)} ms`;
  const rxi = rxEngine as unknown as {
    playback: { queuedFrames(): number } | null;
    matcher: { backlog: number; startTrimmed: number; startPadded: number } | null;
  };
  const jb = rxEngine.rxState('r')!;
  const rxState = `card queue ${rxi.playback?.queuedFrames().toFixed(0)}, matcher backlog ${rxi.matcher?.backlog.toFixed(0)} (start trim ${rxi.matcher?.startTrimmed}, pad ${rxi.matcher?.startPadded}), jitter depth ${jb.depthPackets} packets, aligned ${jb.aligned}, receive in the ${rxEngine.rxThread} thread`;
  const tx = txEngine.list()[0]!.counters as SenderCounters;
  const rx = rxEngine.list()[0]!.counters as { lost: number; late: number };
  await txEngine.stop();
  await rxEngine.stop();
  lat.sort((a, b) => a - b);
  console.log(
    `  ${label}: capture -> playback p50 ${pct(lat, 0.5).toFixed(3)} ms, p99 ${pct(lat, 0.99).toFixed(3)} ms, max ${(lat[lat.length - 1] ?? NaN).toFixed(3)} ms over ${lat.length} periods after ${SETTLE_S} s settling (TX ring fill at the end ${txFill}); block ${o.block} frames, TX ring ${o.txBufferFrames}, playout delay ${o.delayMs} ms, card queue ${o.playbackQueueFrames}; sender underruns ${tx.underruns}, RX lost ${rx.lost}, late ${rx.late}; ${capture}; at the end: ${rxState}`,
  );
}

async function fineLatencyRuns(): Promise<void> {
  const fine = {
    block: 16,
    txBufferFrames: LL_TX,
    playbackQueueFrames: LL_QUEUE,
    delayMs: LL_DELAY_MS,
    fineTimers: { rxTickUs: 333 },
  };
  const fineLabel = `cards waking per period, receive tick 333 us, TX ring ${LL_TX}, card queue ${LL_QUEUE}, delay ${LL_DELAY_MS} ms`;
  await engineLatencyRun(`low-latency, ${fineLabel}`, { ...fine, port: 24208 });
  if (isRoot)
    await engineLatencyRun(`low-latency, ${fineLabel}, sender SCHED_FIFO 10`, {
      ...fine,
      port: 24210,
      rtPriority: 10,
    });
}

async function main(): Promise<void> {
  console.log(
    `qperiph audio benchmark: ${SECONDS} s per run, node ${process.version}, root ${isRoot}, tshark ${haveTshark}, gstreamer ${haveGst}, pacing-run sender ${BUSY_WAIT ? `busy-waits (lead ${LEAD_US ?? 100} us)` : 'sleeps only'}`,
  );
  const parts = new Set(
    (process.env['AUDIO_BENCH_PARTS'] ?? 'pacing,rt,load,loadrt,cpu,latency,drift').split(','),
  );
  if (parts.has('pacing')) {
    console.log('Pacing, idle:');
    await pacingRun('Q-LAN 16 ch 333 us', qlanFormat(16), QLAN_PAYLOAD_TYPE, 24000);
    await pacingRun('AES67 2 ch L24 1 ms', { encoding: 'L24', channels: 2, framesPerPacket: 48 }, 96, 24002);
  }
  if (parts.has('rt')) {
    console.log('Pacing, idle, sender worker at real-time priority:');
    await pacingRun('Q-LAN 16 ch 333 us', qlanFormat(16), QLAN_PAYLOAD_TYPE, 24008, 10);
    await pacingRun(
      'AES67 2 ch L24 1 ms',
      { encoding: 'L24', channels: 2, framesPerPacket: 48 },
      96,
      24010,
      10,
    );
  }
  if (parts.has('load')) {
    console.log('Pacing, HTTP server in this process under 200 req/s from a second process:');
    await withHttpLoad(() => pacingRun('Q-LAN 16 ch 333 us', qlanFormat(16), QLAN_PAYLOAD_TYPE, 24004));
    await withHttpLoad(() =>
      pacingRun('AES67 2 ch L24 1 ms', { encoding: 'L24', channels: 2, framesPerPacket: 48 }, 96, 24006),
    );
  }
  if (parts.has('loadrt')) {
    console.log('Pacing, HTTP load as above, sender worker at real-time priority (the runtime on a board):');
    await withHttpLoad(() => pacingRun('Q-LAN 16 ch 333 us', qlanFormat(16), QLAN_PAYLOAD_TYPE, 24012, 10));
    await withHttpLoad(() =>
      pacingRun('AES67 2 ch L24 1 ms', { encoding: 'L24', channels: 2, framesPerPacket: 48 }, 96, 24014, 10),
    );
  }
  if (parts.has('cpu')) {
    console.log('CPU, one 16 ch stream TX + RX:');
    await cpuRun();
  }
  if (parts.has('latency')) {
    console.log('End-to-end latency:');
    await latencyRun(96, 24200);
    await latencyRun(48 * 20, 24202);
    console.log('End-to-end latency through two engines (capture card -> playback card):');
    await engineLatencyRun('runtime defaults', {
      block: 48,
      txBufferFrames: 480,
      playbackQueueFrames: 144,
      delayMs: 2,
      port: 24204,
    });
    await engineLatencyRun('low-latency profile', {
      block: 16,
      txBufferFrames: 32,
      playbackQueueFrames: 32,
      delayMs: 1,
      port: 24206,
    });
    await fineLatencyRuns();
  }
  if (parts.has('lowlat') && !parts.has('latency')) {
    console.log('End-to-end latency through two engines, low-latency timers only:');
    await fineLatencyRuns();
  }
  if (parts.has('drift')) {
    console.log('Drift (resampler + tracking loop, simulated card):');
    driftRun();
    rxDriftRun();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
