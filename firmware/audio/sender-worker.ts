/**
 * The RTP sender's worker thread (entry point; see sender.ts for the main-thread side).
 *
 * Pacing: packet n is due at start + n x packetNs on the monotonic clock (mapped from the PTP
 * timeline by the main thread). The worker sleeps with Atomics.wait (a futex: coarse) until a
 * lead before the deadline, spins the rest (fine), writes the packet into the next preallocated
 * buffer (never one whose send is still in flight), sends it on a connected socket, then returns
 * to its event loop (setImmediate) so send callbacks run.
 *
 * - The lead adapts: it follows a decaying maximum of how late the futex wakes us (timer slack,
 *   scheduling), between `leadUs` and a third of the packet time, so the spin is as short as the
 *   machine allows and the wake-up jitter is absorbed by it.
 * - Time is process.hrtime.bigint() (CLOCK_MONOTONIC, the base the main thread maps PTP onto).
 *   performance.now() mapped onto it was tried to avoid a BigInt per spin iteration, and broke
 *   the loopback test under load (packets late and lost), so it is not used.
 * - The worker reports its kernel thread id, so the main thread can give it SCHED_FIFO, and sets
 *   its own timer slack (`/proc/<tid>/timerslack_ns`, 1 ns by default; the process keeps 50 us).
 */
import dgram from 'node:dgram';
import { readlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import { RTP_HEADER_BYTES, writePayload, writeRtpHeader, type SampleEncoding } from './rtp-codec.js';

export interface SenderWorkerData {
  /** Marks this worker's data: the module may be imported inside other workers too. */
  role: 'rtp-sender';
  host: string;
  port: number;
  bindAddress: string;
  sourcePort: number;
  multicastInterface: string | null;
  ttl: number;
  dscp: number | null;
  encoding: SampleEncoding;
  channels: number;
  framesPerPacket: number;
  payloadType: number;
  ssrc: number;
  firstSequence: number;
  /** When more than this many packets behind, skip ahead instead of bursting (counted). */
  maxBurstPackets: number;
  packetNs: number;
  /** Interleaved float32 ring of `slots` frames; a frame's index maps to slot `index & (slots - 1)`. */
  ring: SharedArrayBuffer;
  /** A power of two. */
  slots: number;
  /** Int32 control words, see CTL_*. */
  control: SharedArrayBuffer;
  /** Float64 per-packet lateness log (ns after due at send), length may be 0. */
  lateLog: SharedArrayBuffer;
  leadUs: number;
  /** false: sleep until each deadline, no busy-wait and no adaptive lead (less CPU, looser pacing). */
  busyWait: boolean;
  buffers: number;
  /** 'keep-time': an underrun sends silence and still consumes that packet's slot of the ring. */
  underrun: 'keep-time' | 'hold';
  /** Timer slack for this thread (ns), written to /proc/<tid>/timerslack_ns; null leaves it. */
  timerSlackNs: number | null;
}

export const CTL_WRITE = 0;
export const CTL_READ = 1;
export const CTL_STOP = 2;
export const CTL_SENT = 3;
export const CTL_UNDERRUN = 4;
export const CTL_BUSY = 5;
export const CTL_LATE = 6;
export const CTL_SEND_ERRORS = 7;
export const CTL_SLEEP = 8;
export const CTL_DSCP_SET = 9;
export const CTL_SKIPPED = 10;
export const CTL_WORDS = 16;

function run(d: SenderWorkerData): void {
  const ctl = new Int32Array(d.control);
  const ring = new Float32Array(d.ring);
  const lateLog = new Float64Array(d.lateLog);
  const ch = d.channels;
  const fpp = d.framesPerPacket;
  const spp = fpp * ch;
  const bps = d.encoding === 'F32' ? 4 : d.encoding === 'L24' ? 3 : 2;
  const size = RTP_HEADER_BYTES + spp * bps;
  const bufs: Buffer[] = [];
  const inFlight = new Uint8Array(d.buffers);
  const callbacks: Array<(err: Error | null) => void> = [];
  for (let i = 0; i < d.buffers; i++) {
    bufs.push(Buffer.alloc(size));
    callbacks.push((err) => {
      inFlight[i] = 0;
      if (err) Atomics.add(ctl, CTL_SEND_ERRORS, 1);
    });
  }
  const scratch = new Float32Array(spp);
  let start = 0n;
  let firstTimestamp = 0;
  const nowNs = (): number => Number(process.hrtime.bigint() - start);
  const minLeadNs = d.leadUs * 1000;
  const maxLeadNs = Math.max(minLeadNs, d.packetNs / 3);
  /** Decaying maximum of futex wake-up lateness (ns). */
  let wakeLateNs = 0;
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  let n = 0;
  let next = 0;

  const tick = (): void => {
    if (Atomics.load(ctl, CTL_STOP)) {
      sock.close();
      parentPort?.postMessage({ type: 'stopped', sent: n });
      return;
    }
    let due = n * d.packetNs;
    let now = nowNs();
    if (now - due > d.maxBurstPackets * d.packetNs) {
      // Far behind (the machine stalled): skip the missed packets, keeping time and audio aligned.
      const skip = Math.floor((now - due) / d.packetNs);
      n += skip;
      due = n * d.packetNs;
      Atomics.add(ctl, CTL_SKIPPED, skip);
      const avail = (Atomics.load(ctl, CTL_WRITE) - Atomics.load(ctl, CTL_READ)) | 0;
      Atomics.add(
        ctl,
        CTL_READ,
        d.underrun === 'keep-time' ? skip * fpp : Math.min(avail - (avail % fpp), skip * fpp),
      );
    }
    const leadNs = d.busyWait ? Math.min(maxLeadNs, Math.max(minLeadNs, wakeLateNs + 20_000)) : 0;
    const wakeAt = due - leadNs;
    if (wakeAt > now) {
      Atomics.wait(ctl, CTL_SLEEP, 0, (wakeAt - now) / 1e6);
      now = nowNs();
      const lateWake = now - wakeAt;
      wakeLateNs = lateWake > wakeLateNs ? lateWake : wakeLateNs * 0.999;
    }
    while (now < due) now = nowNs();
    if (now - due > d.packetNs) Atomics.add(ctl, CTL_LATE, 1);
    if (inFlight[next]) {
      // Every buffer is still with the OS: skip this packet rather than corrupt one in flight.
      Atomics.add(ctl, CTL_BUSY, 1);
    } else {
      const buf = bufs[next]!;
      writeRtpHeader(
        buf,
        d.payloadType,
        n === 0,
        (d.firstSequence + n) & 0xffff,
        (firstTimestamp + n * fpp) >>> 0,
        d.ssrc,
      );
      const w = Atomics.load(ctl, CTL_WRITE);
      const r = Atomics.load(ctl, CTL_READ);
      if (((w - r) | 0) >= fpp) {
        const at = r & (d.slots - 1);
        if (at + fpp <= d.slots) writePayload(d.encoding, ring, at * ch, spp, buf, RTP_HEADER_BYTES);
        else {
          const first = (d.slots - at) * ch;
          scratch.set(ring.subarray(at * ch), 0);
          scratch.set(ring.subarray(0, spp - first), first);
          writePayload(d.encoding, scratch, 0, spp, buf, RTP_HEADER_BYTES);
        }
        Atomics.store(ctl, CTL_READ, (r + fpp) | 0);
      } else {
        scratch.fill(0);
        writePayload(d.encoding, scratch, 0, spp, buf, RTP_HEADER_BYTES);
        Atomics.add(ctl, CTL_UNDERRUN, 1);
        // Keep the ring on time: the frames for this packet, when they come, are already stale.
        if (d.underrun === 'keep-time') Atomics.store(ctl, CTL_READ, (r + fpp) | 0);
      }
      inFlight[next] = 1;
      sock.send(buf, callbacks[next]);
      Atomics.add(ctl, CTL_SENT, 1);
      if (n < lateLog.length) lateLog[n] = nowNs() - due;
      next = (next + 1) % d.buffers;
    }
    n++;
    setImmediate(tick);
  };

  sock.on('error', () => Atomics.add(ctl, CTL_SEND_ERRORS, 1));
  sock.bind({ address: d.bindAddress, port: d.sourcePort }, () => {
    if (d.multicastInterface) {
      sock.setMulticastInterface(d.multicastInterface);
      sock.setMulticastTTL(d.ttl);
      sock.setMulticastLoopback(true);
    }
    if (d.dscp !== null) {
      try {
        const req = createRequire(import.meta.url);
        process.noDeprecation = true; // sockopt reads socket._handle (DEP0112)
        const so = req('sockopt') as { setsockopt: (s: unknown, l: number, o: number, v: number) => void };
        so.setsockopt(sock, 0 /* IPPROTO_IP */, 1 /* IP_TOS */, d.dscp << 2);
        Atomics.store(ctl, CTL_DSCP_SET, 1);
      } catch {
        Atomics.store(ctl, CTL_DSCP_SET, -1);
      }
    }
    sock.connect(d.port, d.host, () => {
      // The main thread anchors the timeline only now, so start-up time never makes packets late.
      parentPort?.once('message', (go: { startMonoNs: string; firstTimestamp: number }) => {
        start = BigInt(go.startMonoNs);
        firstTimestamp = go.firstTimestamp;
        tick();
      });
      let tid: number | null = null;
      try {
        tid = Number(readlinkSync('/proc/thread-self').split('/').pop()) || null;
      } catch {
        // not Linux: no thread id, no real-time priority
      }
      // Timer slack of this thread only (the default 50 us makes every futex wake late):
      // /proc/<tid>/timerslack_ns, writable by the thread itself without privileges.
      let slack: string | null = null;
      if (tid !== null && d.timerSlackNs !== null) {
        try {
          writeFileSync(`/proc/${tid}/timerslack_ns`, String(d.timerSlackNs));
        } catch (e) {
          slack = (e as Error).message.slice(0, 200);
        }
      } else if (d.timerSlackNs !== null) slack = 'no thread id';
      parentPort?.postMessage({ type: 'ready', local: sock.address(), tid, slackError: slack });
    });
  });
}

if (parentPort && (workerData as SenderWorkerData | null)?.role === 'rtp-sender')
  run(workerData as SenderWorkerData);
