/**
 * The Core's receive worker: every audio peer's receive side (rx-side.ts) runs here, off the
 * Core's main thread, so that QRC, the dashboard, TLS and the control links never delay a
 * datagram read. Sockets get a large SO_RCVBUF. Requests come as messages from rx-thread.ts;
 * warnings go back as log records.
 */
import { parentPort } from 'node:worker_threads';
import { createAudioDatagramBinding } from '../../../firmware/audio/audio-datagram.js';
import { createFreeRunningClock, type MediaClock } from '../../../firmware/audio/media-clock.js';
import { createSystemClock } from '../../../firmware/clock/clock.js';
import type { LogFields, Logger } from '../../../firmware/log/logger.js';
import type { RemoteSender } from './peer-stats.js';
import { RxSide, type RxSideOptions } from './rx-side.js';

export type RxRequest =
  | {
      op: 'open';
      reqId: number;
      id: number;
      options: RxSideOptions;
      anchorNs: string;
      recvBufferSize: number;
    }
  | { op: 'snapshot'; reqId: number; id: number; remoteSender: RemoteSender | null; anchorNs: string }
  | { op: 'close'; reqId: number; id: number };

export type RxReply =
  | { op: 'reply'; reqId: number; ok: true; value?: unknown }
  | { op: 'reply'; reqId: number; ok: false; message: string; code?: string }
  | { op: 'log'; level: 'warn' | 'error'; event: string; fields: LogFields };

const port = parentPort;
if (!port) throw new Error('rx-worker runs as a worker thread');

/** A media clock whose anchor follows the main thread's (PTP may move it). */
class FollowedClock {
  private readonly base: MediaClock;
  constructor(public anchorNs: bigint) {
    this.base = createFreeRunningClock(0, anchorNs);
  }
  nowNs(): bigint {
    return process.hrtime.bigint() + this.anchorNs;
  }
  status(): ReturnType<MediaClock['status']> {
    return this.base.status();
  }
  onEvent(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}

function forwardLogger(bindings: LogFields): Logger {
  const send = (level: 'warn' | 'error', event: string, fields?: LogFields): void => {
    const f: LogFields = { ...bindings, ...fields };
    if (f['error'] instanceof Error) f['error'] = { message: f['error'].message };
    port!.postMessage({ op: 'log', level, event, fields: f } satisfies RxReply);
  };
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (e, f) => send('warn', e, f),
    error: (e, f) => send('error', e, f),
    child: (b) => forwardLogger({ ...bindings, ...b }),
  };
}

const sides = new Map<number, { side: RxSide; clock: FollowedClock }>();
const clock = createSystemClock();

async function handle(m: RxRequest): Promise<unknown> {
  switch (m.op) {
    case 'open': {
      const mc = new FollowedClock(BigInt(m.anchorNs));
      const side = new RxSide(m.options, {
        binding: createAudioDatagramBinding(m.recvBufferSize),
        clock,
        mediaClock: mc,
        logger: forwardLogger({ rxId: m.id }),
      });
      await side.start();
      sides.set(m.id, { side, clock: mc });
      return undefined;
    }
    case 'snapshot': {
      const s = sides.get(m.id);
      if (!s) throw new Error(`no receive side ${m.id}`);
      s.clock.anchorNs = BigInt(m.anchorNs);
      return s.side.snapshot(m.remoteSender);
    }
    case 'close': {
      const s = sides.get(m.id);
      sides.delete(m.id);
      await s?.side.close();
      return undefined;
    }
  }
}

port.on('message', (m: RxRequest) => {
  handle(m).then(
    (value) => port.postMessage({ op: 'reply', reqId: m.reqId, ok: true, value } satisfies RxReply),
    (e: unknown) =>
      port.postMessage({
        op: 'reply',
        reqId: m.reqId,
        ok: false,
        message: e instanceof Error ? e.message : String(e),
        ...(typeof (e as { code?: unknown }).code === 'string' ? { code: (e as { code: string }).code } : {}),
      } satisfies RxReply),
  );
});
