/**
 * `qperiph core [options]`: run the emulated Core in the foreground (JSON logs on stdout) until
 * SIGTERM/SIGINT. Exit 0 on a clean stop, 2 on bad usage or an invalid design (every problem
 * printed with its JSON Pointer).
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createJsonLogger } from '../../firmware/log/logger.js';
import { findProjectRoot } from '../../firmware/paths.js';
import { Core } from './core.js';
import { loadDesign } from './design.js';

export const CORE_HELP = `Usage: qperiph core [options]

Runs an emulated Q-SYS-style Core: announces itself on QDP, finds the design's
peripherals, claims them (secure: mutual TLS, pinned certificates), pushes their
configuration, drives their controls over the 1700 control link, serves QRC on
TCP 1710 and a web dashboard. Logs are JSON lines on stdout.

Options:
  --design FILE        design file (default bench/core/designs/example.json)
  --address IP         the Core's address (default 127.0.0.1)
  --name NAME          the Core's QDP name (default qcore-<role>)
  --state-dir DIR      the Core's state: identity, pins, rollout journal
                       (default .state/core-<role>)
  --identity-dir DIR   key, certificate and pins; give both Cores of a redundant
                       pair the same directory (default <state-dir>/identity)
  --qrc-port N         QRC port (default 1710; 0 = any free port)
  --dashboard-port N   dashboard port (default 8090; 0 = any free port)
  --role primary|backup  role in a redundant pair (default primary)
  --peer ADDR          the other Core of the pair (enables redundancy)
  --secure             mutual TLS on the control link and pinned certificates
  --ptp-interface IF   run ptp4l as the Core's PTP grandmaster on IF (e.g. lo;
                       needs linuxptp; without it the Core carries on and says so)
  -h, --help           this help
`;

export async function runCoreCli(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  },
): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        design: { type: 'string' },
        address: { type: 'string' },
        name: { type: 'string' },
        'state-dir': { type: 'string' },
        'identity-dir': { type: 'string' },
        'qrc-port': { type: 'string' },
        'dashboard-port': { type: 'string' },
        role: { type: 'string' },
        peer: { type: 'string' },
        secure: { type: 'boolean' },
        'ptp-interface': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${CORE_HELP}`);
    return 2;
  }
  if (values['help']) {
    io.out(CORE_HELP);
    return 0;
  }
  const port = (flag: string, dflt: number): number | null => {
    const v = values[flag];
    if (v === undefined) return dflt;
    const n = Number(v);
    return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : null;
  };
  const role = (values['role'] as string | undefined) ?? 'primary';
  if (role !== 'primary' && role !== 'backup') {
    io.err('--role must be primary or backup\n');
    return 2;
  }
  const qrcPort = port('qrc-port', 1710);
  const dashboardPort = port('dashboard-port', 8090);
  if (qrcPort === null || dashboardPort === null) {
    io.err('ports must be 0..65535\n');
    return 2;
  }
  let design;
  try {
    design = loadDesign(
      (values['design'] as string | undefined) ??
        join(findProjectRoot(env), 'bench', 'core', 'designs', 'example.json'),
    );
  } catch (err) {
    io.err(`${(err as Error).message}\n`);
    return 2;
  }
  const logger = createJsonLogger({ level: env['QPERIPH_LOG_LEVEL'] === 'debug' ? 'debug' : 'info' });
  const stateDir = (values['state-dir'] as string | undefined) ?? join('.state', `core-${role}`);
  const core = await Core.start({
    design,
    address: (values['address'] as string | undefined) ?? '127.0.0.1',
    stateDir,
    ...(values['identity-dir'] ? { identityDir: values['identity-dir'] as string } : {}),
    ...(values['name'] ? { name: values['name'] as string } : {}),
    role,
    peer: (values['peer'] as string | undefined) ?? null,
    secure: values['secure'] === true,
    qrcPort,
    dashboardPort,
    ptpInterface: (values['ptp-interface'] as string | undefined) ?? null,
    logger,
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info('core_signal', { signal });
      setTimeout(() => resolve(1), 3000).unref();
      void core.stop().then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
