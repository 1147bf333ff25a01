/**
 * The NetconfigService a board gets. The virtual board (or QPERIPH_NETCONFIG=dry-run) writes
 * under `<stateDir>/os-network` and runs nothing: a dry run that never touches the machine. A
 * real board writes the real paths (root '/'), runs the apply steps of its network stack
 * (board.network.stack, default systemd-networkd) and checks connectivity before keeping a
 * change: TCP to the gateways (settings + kernel default routes) and to `probeTargets()` (the
 * Core), or, with nothing to probe, whether LAN A still has an IPv4 address.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { Logger } from '../log/logger.js';
import { resolveLanAddress, systemInterfaceLister, type InterfaceLister } from '../net/interfaces.js';
import { createFsNetBinding, execCommandRunner, type CommandRunner } from './binding.js';
import { createConnectivityProbe, gatewayTargets, parseDefaultGateways, type ProbeTarget } from './probe.js';
import { NetconfigService } from './service.js';
import type { NetworkSettings } from './types.js';

export interface NetconfigForBoardOptions {
  clock: ClockSource;
  logger: Logger;
  /** Settings before the admin changes any (default: DHCP on every LAN, the device name). */
  defaults: NetworkSettings;
  /** Extra probe targets asked at every check, e.g. the Core that claimed the device. */
  probeTargets?: () => ProbeTarget[] | Promise<ProbeTarget[]>;
  /** Per-target TCP timeout (default 3 s). */
  probeTimeoutMs?: number;
  revertAfterMs?: number;
  /** Seams for tests: where files go, how commands run, the routing table, interface addresses. */
  root?: string;
  run?: CommandRunner;
  readRoutes?: () => Promise<string>;
  interfaces?: InterfaceLister;
}

export function defaultNetworkSettings(board: Readonly<BoardConfig>, hostname: string): NetworkSettings {
  return { hostname, dns: [], lanA: { mode: 'dhcp' }, lanB: board.network.lanB ? { mode: 'dhcp' } : null };
}

export async function createNetconfigForBoard(
  board: Readonly<BoardConfig>,
  stateDir: string,
  env: NodeJS.ProcessEnv,
  o: NetconfigForBoardOptions,
): Promise<NetconfigService> {
  const dryRun = board.isVirtual || env['QPERIPH_NETCONFIG'] === 'dry-run';
  const backend = board.network.stack ?? 'systemd-networkd';
  const interfaces = { lanA: board.network.lanA.interface, lanB: board.network.lanB?.interface ?? null };
  const logger = o.logger.child({ module: 'netconfig' });
  const common = {
    clock: o.clock,
    logger: o.logger,
    stateDir,
    backend,
    interfaces,
    defaults: o.defaults,
    ...(o.revertAfterMs !== undefined ? { revertAfterMs: o.revertAfterMs } : {}),
  };
  if (dryRun) {
    return NetconfigService.open({
      ...common,
      binding: createFsNetBinding({ logger }),
      root: o.root ?? join(stateDir, 'os-network'),
    });
  }
  const lister = o.interfaces ?? systemInterfaceLister;
  const readRoutes = o.readRoutes ?? (() => readFile('/proc/net/route', 'utf8'));
  let service: NetconfigService | null = null;
  const probe = createConnectivityProbe({
    logger,
    ...(o.probeTimeoutMs !== undefined ? { timeoutMs: o.probeTimeoutMs } : {}),
    targets: async () => {
      const routes = parseDefaultGateways(await readRoutes().catch(() => ''));
      const network = service?.snapshot().network ?? o.defaults;
      return [...gatewayTargets(network, interfaces, routes), ...((await o.probeTargets?.()) ?? [])];
    },
    noTargets: () => resolveLanAddress(board.network.lanA, lister) !== null,
  });
  service = await NetconfigService.open({
    ...common,
    binding: createFsNetBinding({ run: o.run ?? execCommandRunner, probe, logger }),
    root: o.root ?? '/',
  });
  logger.info('netconfig_ready', { backend, root: o.root ?? '/' });
  return service;
}
