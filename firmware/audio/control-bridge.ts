/**
 * Joins the audio engine to the control link: the StreamApi the link's
 * Stream.Open/Close call, and per-channel gain, mute and meter controls in the
 * named-controls registry (`audio.in.1.gain`, `audio.out.2.mute`,
 * `audio.in.1.peak`, …). Meters are refreshed by `refreshMeters()`, which the
 * runtime calls on a timer.
 */
import type { StreamApi, StreamInfo, StreamOpenRequest } from '../control/apis.js';
import type { ControlHandle, ControlRegistry } from '../control/registry.js';
import type { AudioEngine, StreamStatus } from './engine.js';

function info(s: StreamStatus, req?: StreamOpenRequest): StreamInfo {
  return {
    streamId: s.id,
    direction: s.direction === 'tx' ? 'send' : 'receive',
    format: s.kind,
    address: req?.address ?? '',
    port: req?.port ?? 0,
    channels: req?.channels ?? Array.from({ length: s.channels }, (_, i) => i + 1),
    counters: s.counters,
    ...(s.sdp ? { sdp: s.sdp } : {}),
  };
}

/** The StreamApi over an AudioEngine. Channel numbers on the link are 1-based. */
export function createStreamApi(engine: AudioEngine): StreamApi {
  const requests = new Map<string, StreamOpenRequest>();
  let next = 1;
  return {
    async open(req) {
      const id = `${req.direction === 'send' ? 'tx' : 'rx'}-${next++}`;
      const channelMap = req.channels.map((c) => c - 1);
      const status =
        req.direction === 'send'
          ? await engine.openTx({
              id,
              kind: req.format,
              channelMap,
              destination: { address: req.address, port: req.port },
            })
          : await engine.openRx({
              id,
              kind: req.format,
              channelMap,
              source: { address: req.address, port: req.port },
            });
      requests.set(id, req);
      return info(status, req);
    },
    async close(streamId) {
      await engine.close(streamId);
      requests.delete(streamId);
    },
    list() {
      return engine.list().map((s) => info(s, requests.get(s.id)));
    },
  };
}

/** Register gain/mute (writable) and peak/RMS meters (read-only) for every channel. */
export function registerAudioControls(
  engine: AudioEngine,
  registry: ControlRegistry,
  channels: { input: number; output: number },
): { refreshMeters(): void; unregister(): void } {
  const handles: ControlHandle[] = [];
  const meters: Array<{ side: 'input' | 'output'; ch: number; peak: ControlHandle; rms: ControlHandle }> = [];
  for (const side of ['input', 'output'] as const) {
    const tag = side === 'input' ? 'in' : 'out';
    for (let ch = 0; ch < channels[side]; ch++) {
      const base = `audio.${tag}.${ch + 1}`;
      handles.push(
        registry.register({
          name: `${base}.gain`,
          type: 'float',
          min: -100,
          max: 24,
          unit: 'dB',
          writable: true,
          initial: 0,
          description: `${side} ${ch + 1} gain`,
          onSet: (v) => engine.setGain(side, ch, Number(v)),
        }),
        registry.register({
          name: `${base}.mute`,
          type: 'boolean',
          writable: true,
          initial: false,
          description: `${side} ${ch + 1} mute`,
          onSet: (v) => engine.setMute(side, ch, v === true),
        }),
      );
      const peak = registry.register({
        name: `${base}.peak`,
        type: 'float',
        min: -120,
        max: 0,
        unit: 'dBFS',
        writable: false,
        initial: -120,
      });
      const rms = registry.register({
        name: `${base}.rms`,
        type: 'float',
        min: -120,
        max: 0,
        unit: 'dBFS',
        writable: false,
        initial: -120,
      });
      handles.push(peak, rms);
      meters.push({ side, ch, peak, rms });
    }
  }
  const clamp = (db: number): number => (Number.isFinite(db) ? Math.max(-120, Math.min(0, db)) : -120);
  return {
    refreshMeters() {
      const m = engine.meters();
      for (const x of meters) {
        const level = m[x.side][x.ch];
        if (!level) continue;
        x.peak.update(clamp(level.peakDb));
        x.rms.update(clamp(level.rmsDb));
      }
    },
    unregister() {
      for (const h of handles) h.unregister();
    },
  };
}
