#!/usr/bin/env node
/**
 * `qperiph`: the command line. Subcommands parse their own flags and print
 * their own --help; exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
 */
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createSystemClock } from './clock/clock.js';
import { loadBoardConfig } from './config/board-config.js';
import { QperiphError } from './errors.js';
import { createJsonLogger, silentLogger } from './log/logger.js';
import { startPeripheral, type RunningPeripheral } from './main.js';
import { createNodeDatagramBinding } from './net/datagram-binding.js';
import { allIpv4Addresses, resolveLanAddress, systemInterfaceLister } from './net/interfaces.js';
import { findProjectRoot, packageVersion } from './paths.js';
import { discover, formatDeviceTable } from './qdp/discovery.js';

class UsageError extends QperiphError {
  constructor(message: string) {
    super('CLI_ERR_USAGE', message);
  }
}

const MAIN_HELP = `qperiph ${packageVersion()}: a Q-SYS-style networked audio and control peripheral

Usage: qperiph <command> [options]

Commands:
  start      run the peripheral (QDP, control link, Peripheral Manager, I/O)
  discover   list every QDP device heard (qperiph peripherals and real Q-SYS gear)
  control    call a method on a peripheral's control link (TCP 1700)
  bundle     make keys, sign, verify and inspect firmware bundles
  audio      AES67/Q-LAN tools: ptp4l config, SAP listener, test tone
  image      build SD-card images and their update bundles (build|base|native-modules|boot|inspect)
  manager    run the Peripheral Manager alone, show the certificate, reset the password
  board      check a board configuration file
  core       run the emulated Core (bench): QDP, claim, control, QRC 1710, dashboard, rollouts
  drill      run a field-style update drill: N peripherals, faults, JSON/JUnit/SVG report
  version    print the version

Run 'qperiph <command> --help' for a command's options.
`;

const START_HELP = `Usage: qperiph start [--board FILE] [--state-dir DIR] [options]

Runs the peripheral in the foreground. Logs are JSON lines on stdout. Under
systemd (Type=notify) it reports READY=1, STATUS= and pings the watchdog.

Options:
  --board FILE      board configuration (default: $QPERIPH_BOARD, else
                    /etc/qperiph/board.json, else board-configs/virtual.json)
  --state-dir DIR   persistent device state (default: $STATE_DIRECTORY from
                    systemd, else $QPERIPH_STATE_DIR, else .state/<board id>)
  --name NAME       device name for this run (the stored name is kept)
  --address IP      LAN A address override, e.g. 127.0.0.5 for a bench of
                    several virtual peripherals on one machine
  --ttl N           QDP multicast TTL for this run (default: stored setting)
  --control-port N  control link port (default 1700)
  --http-port N     Peripheral Manager HTTP port (default 80; virtual board 8080)
  --https-port N    Peripheral Manager HTTPS port (default 443; virtual board 8443)
  -h, --help        this help
`;

const DISCOVER_HELP = `Usage: qperiph discover [--timeout S] [--json] [where to look]

Listens on QDP ports 2467-2470, sends device queries, and lists every device
heard within the timeout: as a table, or as JSON with --json.

Where to look (default: loopback, where the virtual peripheral runs):
  --interface NAME  search the LAN on this interface (repeatable), e.g. eth0
  --address IP      search from this local address (repeatable)
  --all             search on every non-loopback IPv4 interface

Options:
  --timeout S       seconds to listen (default 2; devices answer queries at once)
  --ttl N           multicast TTL of the queries (default 1)
  --json            machine-readable output
  -h, --help        this help
`;

const BOARD_HELP = `Usage: qperiph board validate FILE [--json]

Checks a board configuration against board-configs/board.schema.json and the
rules the schema cannot express; prints every problem with its JSON path.
Exit code 0 when valid, 2 otherwise.
`;

function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function defaultBoard(env: NodeJS.ProcessEnv): string {
  if (env['QPERIPH_BOARD']) return env['QPERIPH_BOARD'];
  if (existsSync('/etc/qperiph/board.json')) return '/etc/qperiph/board.json';
  return path.join(findProjectRoot(env), 'board-configs', 'virtual.json');
}

async function cmdStart(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parse(argv, {
    board: { type: 'string' },
    'state-dir': { type: 'string' },
    name: { type: 'string' },
    address: { type: 'string' },
    ttl: { type: 'string' },
    'control-port': { type: 'string' },
    'http-port': { type: 'string' },
    'https-port': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(START_HELP);
    return 0;
  }
  const boardFile = (values.board as string | undefined) ?? defaultBoard(env);
  let stateDir =
    (values['state-dir'] as string | undefined) ?? env['STATE_DIRECTORY'] ?? env['QPERIPH_STATE_DIR'];
  if (!stateDir) stateDir = path.join('.state', path.basename(boardFile, '.json'));
  const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl >= 1 && ttl <= 255))
    throw new UsageError('--ttl must be 1..255');
  const port = (flag: string): number | undefined => {
    const v = (values as Record<string, unknown>)[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 0 && n <= 65535)) throw new UsageError(`--${flag} must be 0..65535`);
    return n;
  };
  const controlPort = port('control-port');
  const httpPort = port('http-port');
  const httpsPort = port('https-port');

  let running: RunningPeripheral | null = null;
  let exiting = false;
  const shutdown = (signal: string): void => {
    if (exiting) return;
    exiting = true;
    // Hard deadline: whatever hangs, the process is gone within 2 s of SIGTERM.
    setTimeout(() => process.exit(1), 1800).unref();
    void (running ? running.stop(signal) : Promise.resolve()).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  running = await startPeripheral({
    boardFile,
    stateDir,
    name: values.name as string | undefined,
    address: values.address as string | undefined,
    qdpTtl: ttl,
    controlPort,
    httpPort,
    httpsPort,
    env,
  });
  if (exiting) await running.stop('signal during start');
  return -1; // keep running until a signal
}

async function cmdDiscover(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    timeout: { type: 'string' },
    ttl: { type: 'string' },
    json: { type: 'boolean' },
    interface: { type: 'string', multiple: true },
    address: { type: 'string', multiple: true },
    all: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(DISCOVER_HELP);
    return 0;
  }
  const timeout = values.timeout === undefined ? 2 : Number(values.timeout);
  if (!(timeout > 0 && timeout <= 3600))
    throw new UsageError('--timeout must be a number of seconds in (0, 3600]');
  const ttl = values.ttl === undefined ? 1 : Number(values.ttl);
  if (!(Number.isInteger(ttl) && ttl >= 1 && ttl <= 255)) throw new UsageError('--ttl must be 1..255');
  const addresses = new Set<string>((values.address as string[] | undefined) ?? []);
  for (const ifname of (values.interface as string[] | undefined) ?? []) {
    const a = resolveLanAddress({ interface: ifname }, systemInterfaceLister);
    if (!a) throw new UsageError(`interface ${ifname} has no IPv4 address`);
    addresses.add(a.address);
  }
  if (values.all) for (const a of allIpv4Addresses(systemInterfaceLister, false)) addresses.add(a);
  if (addresses.size === 0) addresses.add('127.0.0.1');
  const result = await discover({
    binding: createNodeDatagramBinding(),
    clock: createSystemClock(),
    logger: silentLogger,
    addresses: [...addresses],
    timeoutMs: timeout * 1000,
    ttl,
  });
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  if (values.json) {
    process.stdout.write(
      JSON.stringify({ devices: result.devices, dropped: result.dropped }, null, 2) + '\n',
    );
  } else if (result.devices.length === 0) {
    process.stdout.write(`no QDP devices heard in ${timeout} s on ${[...addresses].join(', ')}\n`);
  } else {
    process.stdout.write(formatDeviceTable(result.devices));
  }
  return 0;
}

function cmdBoard(argv: string[]): number {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  if (values.help || positionals[0] !== 'validate' || !positionals[1]) {
    process.stdout.write(BOARD_HELP);
    return values.help ? 0 : 2;
  }
  const board = loadBoardConfig(positionals[1]);
  process.stdout.write(
    values.json ? JSON.stringify(board, null, 2) + '\n' : `${positionals[1]}: valid (${board.model})\n`,
  );
  return 0;
}

export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return cmdStart(rest, env);
    case 'discover':
      return cmdDiscover(rest);
    case 'board':
      return cmdBoard(rest);
    case 'image': {
      // Bench/build tooling lives in scripts/ (firmware/ never imports it statically); a device
      // install does not ship it.
      const spec = '../scripts/image/cli.js';
      try {
        const mod = (await import(spec)) as {
          runImageCli: (a: string[], e: NodeJS.ProcessEnv) => Promise<number>;
        };
        return await mod.runImageCli(rest, env);
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') {
          process.stderr.write('qperiph image: not available in this install\n');
          return 1;
        }
        throw err;
      }
    }
    case 'audio':
      return (await import('./audio/cli.js')).runAudioCli(rest, env);
    case 'bundle':
      return (await import('./update/cli.js')).runBundleCli(rest, env);
    case 'control':
      return (await import('./control/cli.js')).runControlCli(rest, env);
    case 'drill':
      return (await import('../bench/drill/cli.js')).runDrillCli(rest);
    case 'core':
      return (await import('../bench/core/cli.js')).runCoreCli(rest, env);
    case 'manager':
      return (await import('./peripheral-manager/cli.js')).runPeripheralManagerCli(rest, env);
    case 'version':
    case '--version':
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(MAIN_HELP);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

function reportError(err: unknown): number {
  if (err instanceof QperiphError) {
    const issues = (err as { issues?: Array<{ path: string; message: string }> }).issues;
    createJsonLogger({ write: (l) => process.stderr.write(l) }).error('fatal', {
      code: err.code,
      message: err.message,
      ...(issues ? { issues } : {}),
    });
    process.stderr.write(`qperiph: ${err.message}\n`);
    return err.code === 'CLI_ERR_USAGE' || err.code.startsWith('CONFIG_ERR') ? 2 : 1;
  }
  process.stderr.write(`qperiph: ${(err as Error)?.stack ?? String(err)}\n`);
  return 1;
}

function isMainModule(): boolean {
  try {
    return (
      !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    );
  } catch {
    return false;
  }
}

const invokedDirectly = isMainModule();
if (invokedDirectly) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err) => {
      process.exitCode = reportError(err);
      if (process.listenerCount('SIGTERM') > 0) process.exit(process.exitCode);
    },
  );
}
