/**
 * Applies network / 802.1X settings through the NetBinding with a safety net: the settings are
 * validated, the files they replace are snapshotted, the new files are written and applied, and
 * after `revertAfterMs` connectivity is probed; if it is lost the snapshot is written back and
 * applied again (events: netconfig_applied, netconfig_confirmed, netconfig_reverted).
 * Accepted settings are kept in `<stateDir>/netconfig.json` (0600: it holds 802.1X secrets).
 */
import { join } from 'node:path';
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { Logger } from '../log/logger.js';
import { applySteps, type ApplyStep } from './apply-plan.js';
import type { NetBinding } from './binding.js';
import { renderNetworkFiles, type NetBackend, type RenderedFile } from './render.js';
import {
  NetconfigError,
  validateDot1xSettings,
  validateNetworkSettings,
  type Dot1xSettings,
  type NetworkSettings,
} from './types.js';

export interface NetconfigServiceOptions {
  binding: NetBinding;
  clock: ClockSource;
  logger: Logger;
  stateDir: string;
  /** Where the OS files go ('/' on a device). */
  root: string;
  backend: NetBackend;
  interfaces: { lanA: string; lanB: string | null };
  defaults: NetworkSettings;
  /** How long after applying connectivity is checked (default 60 s). */
  revertAfterMs?: number;
}

export type NetconfigEvent = 'netconfig_applied' | 'netconfig_confirmed' | 'netconfig_reverted';

export interface NetconfigSnapshot {
  network: NetworkSettings;
  dot1x: Dot1xSettings;
  pending: { revertAtMs: number } | null;
}

function ioError(err: unknown): NetconfigError {
  return new NetconfigError(
    'NETCONFIG_ERR_IO',
    `cannot apply network settings: ${(err as Error).message}`,
    [],
    {
      cause: err,
    },
  );
}

const DOT1X_OFF: Dot1xSettings = { enabled: false, method: 'peap-mschapv2', identity: '', caCert: '' };

export class NetconfigService {
  private network: NetworkSettings;
  private dot1x: Dot1xSettings;
  private pending: {
    timer: TimerHandle;
    revertAtMs: number;
    previous: Map<string, Buffer | null>;
    prevSettings: [NetworkSettings, Dot1xSettings];
  } | null = null;
  private busy = false;
  private readonly file: string;
  private readonly log: Logger;
  private readonly listeners = new Set<(event: NetconfigEvent, detail: string) => void>();

  private constructor(
    private readonly o: NetconfigServiceOptions,
    saved: { network: NetworkSettings; dot1x: Dot1xSettings } | null,
  ) {
    this.file = join(o.stateDir, 'netconfig.json');
    this.network = saved?.network ?? o.defaults;
    this.dot1x = saved?.dot1x ?? DOT1X_OFF;
    this.log = o.logger.child({ module: 'netconfig' });
  }

  static async open(o: NetconfigServiceOptions): Promise<NetconfigService> {
    const bytes = await readFileIfExists(join(o.stateDir, 'netconfig.json'));
    let saved: { network: NetworkSettings; dot1x: Dot1xSettings } | null = null;
    if (bytes) {
      try {
        const v = JSON.parse(bytes.toString('utf8')) as { network: unknown; dot1x: unknown };
        saved = { network: validateNetworkSettings(v.network), dot1x: validateDot1xSettings(v.dot1x) };
      } catch (err) {
        o.logger.warn('netconfig_saved_unusable', { err });
      }
    }
    return new NetconfigService(o, saved);
  }

  /** Be told of applied / confirmed / reverted changes (for the event log). Returns an unsubscribe. */
  onEvent(fn: (event: NetconfigEvent, detail: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(event: NetconfigEvent, detail: string): void {
    for (const fn of this.listeners) fn(event, detail);
  }

  /** Current settings with secrets (802.1X password, client key) left out. */
  snapshot(): NetconfigSnapshot {
    const { password: _p, clientKey: _k, ...dot1x } = this.dot1x;
    return {
      network: this.network,
      dot1x: {
        ...dot1x,
        ...(this.dot1x.password ? { password: '********' } : {}),
        ...(this.dot1x.clientKey ? { clientKey: '(set)' } : {}),
      },
      pending: this.pending ? { revertAtMs: this.pending.revertAtMs } : null,
    };
  }

  async applyNetwork(value: unknown): Promise<NetconfigSnapshot> {
    const next = validateNetworkSettings(value);
    return this.apply(next, this.dot1x);
  }

  /** Secrets left out or given as the redacted placeholders keep their saved values. */
  async applyDot1x(value: unknown): Promise<NetconfigSnapshot> {
    const v = { ...(value as Record<string, unknown>) };
    if (v['password'] === '********' || v['password'] === undefined) v['password'] = this.dot1x.password;
    if (v['clientKey'] === '(set)' || v['clientKey'] === undefined) v['clientKey'] = this.dot1x.clientKey;
    const next = validateDot1xSettings(v);
    return this.apply(this.network, next);
  }

  /** The files these settings render to (for tests and the 802.1X integration test). */
  render(network = this.network, dot1x: Dot1xSettings | null = this.dot1x): RenderedFile[] {
    return renderNetworkFiles({
      root: this.o.root,
      backend: this.o.backend,
      interfaces: this.o.interfaces,
      network,
      dot1x,
    });
  }

  /** The commands that make the OS use these settings' files. */
  steps(network = this.network, dot1x: Dot1xSettings | null = this.dot1x): ApplyStep[] {
    return applySteps({ backend: this.o.backend, interfaces: this.o.interfaces, network, dot1x });
  }

  private async apply(network: NetworkSettings, dot1x: Dot1xSettings): Promise<NetconfigSnapshot> {
    if (this.pending || this.busy) {
      throw new NetconfigError('NETCONFIG_ERR_BUSY', 'a change is still waiting for its connectivity check');
    }
    this.busy = true; // one change at a time, also while this one is being written
    try {
      return await this.applyNow(network, dot1x);
    } finally {
      this.busy = false;
    }
  }

  private async applyNow(network: NetworkSettings, dot1x: Dot1xSettings): Promise<NetconfigSnapshot> {
    const files = this.render(network, dot1x);
    const oldFiles = this.render();
    const paths = [...new Set([...files, ...oldFiles].map((f) => f.path))];
    let previous: Map<string, Buffer | null>;
    try {
      previous = await this.o.binding.read(paths);
    } catch (err) {
      throw ioError(err);
    }
    try {
      await this.o.binding.write(files);
      for (const p of paths) if (!files.some((f) => f.path === p)) await this.o.binding.remove(p);
      await this.o.binding.apply(this.steps(network, dot1x));
    } catch (err) {
      // Half-applied: put the previous files back and apply them, so nothing is left changed.
      await this.restore(previous, this.steps());
      throw ioError(err);
    }
    const prevSettings: [NetworkSettings, Dot1xSettings] = [this.network, this.dot1x];
    this.network = network;
    this.dot1x = dot1x;
    const delay = this.o.revertAfterMs ?? 60_000;
    const revertAtMs = this.o.clock.wallMs() + delay;
    const timer = this.o.clock.setTimeout(() => void this.check(), delay);
    this.pending = { timer, revertAtMs, previous, prevSettings };
    this.log.info('netconfig_applied', { files: files.map((f) => f.path), revertAfterMs: delay });
    this.emit(
      'netconfig_applied',
      `network settings applied; checking connectivity in ${Math.round(delay / 1000)} s`,
    );
    return this.snapshot();
  }

  private async check(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    let ok = false;
    try {
      ok = await this.o.binding.connectivity();
    } catch (err) {
      this.log.warn('netconfig_probe_failed', { err });
    }
    // `pending` stays set until the outcome is on disk and told, so no new change can interleave.
    if (ok) {
      await this.save().catch((err: unknown) => this.log.error('netconfig_save_failed', { err }));
      this.log.info('netconfig_confirmed', {});
      this.emit('netconfig_confirmed', 'connectivity confirmed; network settings kept');
      this.pending = null;
      return;
    }
    [this.network, this.dot1x] = p.prevSettings;
    await this.restore(p.previous, this.steps());
    this.log.warn('netconfig_reverted', { reason: 'connectivity lost' });
    this.emit('netconfig_reverted', 'connectivity lost after the change; previous network settings restored');
    this.pending = null;
  }

  /** Write back the snapshot (modes as rendered for the settings they belong to) and apply. */
  private async restore(previous: Map<string, Buffer | null>, steps: ApplyStep[]): Promise<void> {
    const modes = new Map(this.render().map((f) => [f.path, f.mode]));
    try {
      for (const [path, bytes] of previous) {
        if (bytes === null) await this.o.binding.remove(path);
        else
          await this.o.binding.write([
            { path, content: bytes.toString('utf8'), mode: modes.get(path) ?? 0o600 },
          ]);
      }
      await this.o.binding.apply(steps);
    } catch (err) {
      this.log.error('netconfig_revert_failed', { err });
    }
  }

  private async save(): Promise<void> {
    await writeFileAtomic(
      this.file,
      JSON.stringify({ network: this.network, dot1x: this.dot1x }, null, 2) + '\n',
      {
        mode: 0o600,
      },
    );
  }

  /** Cancel a pending check (service stop). The applied files stay. */
  stop(): void {
    if (this.pending) this.o.clock.clearTimeout(this.pending.timer);
    this.pending = null;
  }
}
