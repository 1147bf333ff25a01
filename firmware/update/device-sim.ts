/**
 * A development "device" in one directory (used by `qperiph bundle install|boot`,
 * the crash-injection tests and the benchmark):
 *   <root>/app/{a,b,current}       app slots + directory boot selector
 *   <root>/state/update.json       update journal and policy state
 *   <root>/anchors/<channel>/*.pem provisioned trust anchors
 */
import { join } from 'node:path';
import { createSystemClock, type ClockSource } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';
import { DirectoryBootSelector, initDirectorySlots } from './boot-selector.js';
import { Installer, type CrashHook, type UpdateOutcome } from './installer.js';
import { loadTrustStore, type TrustChannel } from './trust.js';

export interface SimDeviceOptions {
  root: string;
  logger: Logger;
  board?: string;
  product?: string;
  channel?: TrustChannel;
  healthy?: () => Promise<boolean>;
  healthDeadlineMs?: number;
  crashHook?: CrashHook;
  clock?: ClockSource;
  buildTimeMs?: number;
  report?: (o: UpdateOutcome) => void;
  /** Journal slot-write progress every this many bytes (default: the installer's). */
  progressEveryBytes?: number;
}

export async function createSimDevice(
  o: SimDeviceOptions,
): Promise<{ installer: Installer; selector: DirectoryBootSelector; systemSelector: DirectoryBootSelector }> {
  const appRoot = join(o.root, 'app');
  await initDirectorySlots(appRoot);
  const selector = new DirectoryBootSelector(appRoot);
  // System slots: one rootfs image file per slot, picked by a directory selector of its own.
  const systemRoot = join(o.root, 'system');
  await initDirectorySlots(systemRoot);
  const systemSelector = new DirectoryBootSelector(systemRoot);
  const channel = o.channel ?? 'dev';
  const rotatedTrustFile = join(o.root, 'state', 'trust-anchors.json');
  const opts: ConstructorParameters<typeof Installer>[0] = {
    stateFile: join(o.root, 'state', 'update.json'),
    app: { root: appRoot, selector },
    system: {
      selector: systemSelector,
      rootfs: { a: join(systemRoot, 'rootfs-a.img'), b: join(systemRoot, 'rootfs-b.img') },
    },
    trust: () =>
      loadTrustStore({ provisionedDir: join(o.root, 'anchors'), channel, rotatedFile: rotatedTrustFile }),
    rotatedTrustFile,
    product: o.product ?? 'qperiph',
    board: o.board ?? 'virtual',
    buildTimeMs: o.buildTimeMs ?? Date.UTC(2026, 0, 1),
    clock: o.clock ?? createSystemClock(),
    logger: o.logger,
    health: o.healthy ?? (() => Promise.resolve(true)),
    healthDeadlineMs: o.healthDeadlineMs ?? 2000,
    healthIntervalMs: 50,
  };
  if (o.crashHook) opts.crashHook = o.crashHook;
  if (o.report) opts.report = o.report;
  if (o.progressEveryBytes !== undefined) opts.progressEveryBytes = o.progressEveryBytes;
  return { installer: new Installer(opts), selector, systemSelector };
}

/** Parse QPERIPH_UPDATE_CRASH ('phase:<name>' or 'byte:<n>') into a hook that SIGKILLs this process. */
export function crashHookFromEnv(spec: string | undefined): CrashHook | undefined {
  if (!spec) return undefined;
  const [kind, arg] = spec.split(':');
  if (kind === 'phase') {
    return (p) => {
      if (p.kind === 'phase' && p.name === arg) process.kill(process.pid, 'SIGKILL');
    };
  }
  if (kind === 'byte') {
    const at = Number(arg);
    return (p) => {
      if (p.kind === 'byte' && p.offset >= at) process.kill(process.pid, 'SIGKILL');
    };
  }
  return undefined;
}
