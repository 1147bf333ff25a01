/**
 * Builds the UpdateService for a board (used by firmware/main.ts). Every host
 * path comes from one place so a test or a bench can point them at a temp dir.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { Logger } from '../log/logger.js';
import { packageVersion } from '../paths.js';
import {
  DirectoryBootSelector,
  TrybootSelector,
  UbootSelector,
  type BootSelector,
  type SlotName,
} from './boot-selector.js';
import type { UpdateOutcome } from './installer.js';
import { UpdateService } from './service.js';
import { loadTrustStore, type TrustChannel } from './trust.js';

export interface UpdatePaths {
  /** App slots (a/, b/, current). Default /opt/qperiph/slots (the launcher sets QPERIPH_APP_ROOT). */
  appRoot: string;
  /** Provisioned anchors: <anchorsDir>/<channel>/*.pem. Default /etc/qperiph/anchors. */
  anchorsDir: string;
  /** Mounted bootconfig partition (tryboot). Default /boot/bootconfig. */
  bootConfigDir: string;
  rootfs: Record<SlotName, string>;
  boot: Record<SlotName, string>;
}

export function defaultUpdatePaths(
  board: BoardConfig,
  stateDir: string,
  env: NodeJS.ProcessEnv,
): UpdatePaths {
  const virtual = board.boot.selector === 'directory';
  const sys = join(stateDir, 'system-slots');
  return {
    appRoot: env['QPERIPH_APP_ROOT'] ?? (virtual ? join(stateDir, 'app') : '/opt/qperiph/slots'),
    anchorsDir: env['QPERIPH_ANCHORS_DIR'] ?? (virtual ? join(stateDir, 'anchors') : '/etc/qperiph/anchors'),
    bootConfigDir: env['QPERIPH_BOOTCONFIG_DIR'] ?? '/boot/bootconfig',
    rootfs: virtual
      ? { a: join(sys, 'rootfs-a.img'), b: join(sys, 'rootfs-b.img') }
      : { a: '/dev/disk/by-partlabel/system_a', b: '/dev/disk/by-partlabel/system_b' },
    boot: virtual
      ? { a: join(sys, 'boot-a.img'), b: join(sys, 'boot-b.img') }
      : { a: '/dev/disk/by-partlabel/boot_a', b: '/dev/disk/by-partlabel/boot_b' },
  };
}

export interface UpdateWiringOptions {
  board: BoardConfig;
  stateDir: string;
  env: NodeJS.ProcessEnv;
  clock: ClockSource;
  logger: Logger;
  /** The runtime's health (services up, Core reachable if it was). */
  health: () => Promise<boolean>;
  /** Fingerprints of pinned Cores (DeviceState.trustedCores). */
  pinnedCores: () => string[];
  /** Tell the Core (and anything else) how an update ended. */
  report?: (o: UpdateOutcome) => void | Promise<void>;
  /** App slots restart by exiting; systemd starts the launcher again. */
  restartApp: () => void;
  paths?: Partial<UpdatePaths>;
  /** Version of the running runtime (default: its package.json). */
  version?: string;
}

function buildTimeMs(): number {
  try {
    return statSync(new URL(import.meta.url)).mtimeMs;
  } catch {
    return 0;
  }
}

export function createUpdateService(o: UpdateWiringOptions): UpdateService {
  const paths = { ...defaultUpdatePaths(o.board, o.stateDir, o.env), ...o.paths };
  const channel: TrustChannel =
    o.env['QPERIPH_TRUST_CHANNEL'] === 'dev' || o.board.isVirtual ? 'dev' : 'release';
  const appSelector = new DirectoryBootSelector(paths.appRoot, () => o.restartApp());
  let systemSelector: BootSelector;
  if (o.board.boot.selector === 'rpi-tryboot') {
    systemSelector = new TrybootSelector({ bootConfigDir: paths.bootConfigDir, partitions: { a: 2, b: 3 } });
  } else if (o.board.boot.selector === 'uboot-env') {
    systemSelector = new UbootSelector();
  } else {
    systemSelector = new DirectoryBootSelector(join(o.stateDir, 'system-slots'), () => o.restartApp());
  }
  const rotatedFile = join(o.stateDir, 'trust-anchors.json');
  return new UpdateService({
    stateFile: join(o.stateDir, 'update.json'),
    spoolDir: join(o.stateDir, 'spool'),
    maxBundleBytes: 2 * 1024 * 1024 * 1024,
    app: { root: paths.appRoot, selector: appSelector },
    system: { selector: systemSelector, rootfs: paths.rootfs, boot: paths.boot },
    trust: () =>
      loadTrustStore({
        provisionedDir: paths.anchorsDir,
        channel,
        rotatedFile,
        pinnedCores: o.pinnedCores(),
      }),
    rotatedTrustFile: rotatedFile,
    product: 'qperiph',
    board: o.board.id,
    buildTimeMs: buildTimeMs(),
    clock: o.clock,
    logger: o.logger.child({ module: 'update' }),
    health: o.health,
    healthDeadlineMs: Number(o.env['QPERIPH_UPDATE_HEALTH_DEADLINE_MS'] ?? 120_000),
    runningVersion: o.version ?? packageVersion(),
    ...(o.report ? { report: o.report } : {}),
  });
}
