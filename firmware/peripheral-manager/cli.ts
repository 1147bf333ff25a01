/**
 * `qperiph manager <serve|cert|reset-password>`: run the Peripheral Manager on its own (for
 * development and the bench), show the device certificate, or forget the admin password from a
 * console (recovery: the next visitor sets a new one). Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { createSystemClock } from '../clock/clock.js';
import { loadBoardConfig } from '../config/board-config.js';
import { StateStore } from '../config/state-store.js';
import { createJsonLogger, silentLogger } from '../log/logger.js';
import { findProjectRoot } from '../paths.js';
import { DeviceIdentity } from '../pki/identity.js';
import { CredentialStore } from './auth.js';
import { PeripheralManager } from './service.js';

export const MANAGER_HELP = `Usage: qperiph manager <command> [options]

Commands:
  serve            run the Peripheral Manager alone (HTTP + HTTPS + WebSocket)
  cert             print the device certificate's subject, issuer and fingerprints (JSON)
  reset-password   forget the admin password; the next visitor sets a new one

Options:
  --state-dir DIR     state directory (default: $QPERIPH_STATE_DIR, else .state/virtual)
  --board FILE        board configuration (serve; default board-configs/virtual.json)
  --host IP           address to listen on (serve; default 127.0.0.1)
  --http-port N       HTTP port (serve; default 8080; 80 on a device)
  --https-port N      HTTPS port (serve; default 8443; 443 on a device)
  --name NAME         device name shown and put in the certificate (default: stored name)
  -h, --help          this help

Ports below 1024 need CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=), never root.
`;

export async function runPeripheralManagerCli(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'state-dir': { type: 'string' },
        board: { type: 'string' },
        host: { type: 'string' },
        'http-port': { type: 'string' },
        'https-port': { type: 'string' },
        name: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${MANAGER_HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(MANAGER_HELP);
    return values.help ? 0 : 2;
  }
  const stateDir = values['state-dir'] ?? env['QPERIPH_STATE_DIR'] ?? '.state/virtual';
  const clock = createSystemClock();
  const port = (v: string | undefined, d: number): number => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`bad port ${v}`);
    return n;
  };
  try {
    if (command === 'reset-password') {
      const creds = await CredentialStore.open(stateDir, clock);
      await creds.clear();
      process.stdout.write('admin password cleared; set a new one in the Peripheral Manager\n');
      return 0;
    }
    if (command === 'cert') {
      const state = await StateStore.open({ dir: stateDir, logger: silentLogger, clock });
      const name = values.name ?? state.get().name ?? 'qperiph';
      const id = await DeviceIdentity.open({
        dir: join(stateDir, 'pki'),
        hostname: name,
        addresses: [],
        clock,
        logger: silentLogger,
      });
      process.stdout.write(JSON.stringify(id.info(), null, 2) + '\n');
      return 0;
    }
    if (command === 'serve') {
      const logger = createJsonLogger({ level: env['QPERIPH_LOG_LEVEL'] === 'debug' ? 'debug' : 'info' });
      const host = values.host ?? '127.0.0.1';
      const board = loadBoardConfig(
        values.board ?? join(findProjectRoot(), 'board-configs', 'virtual.json'),
        host !== '0.0.0.0' ? { lanAAddress: host } : {},
      );
      const state = await StateStore.open({ dir: stateDir, logger, clock });
      const mgr = await PeripheralManager.create({
        httpPort: port(values['http-port'], 8080),
        httpsPort: port(values['https-port'], 8443),
        host,
        board,
        state,
        stateDir,
        logger,
        clock,
        ...(values.name ? { name: values.name } : {}),
      });
      await mgr.start();
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await mgr.stop();
      return 0;
    }
  } catch (err) {
    const e = err as { code?: string; message: string };
    process.stderr.write(`qperiph manager ${command}: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    return 1;
  }
  process.stderr.write(`unknown command '${command}'\n\n${MANAGER_HELP}`);
  return 2;
}
