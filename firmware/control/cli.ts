/**
 * `qperiph control call METHOD [PARAMS_JSON] [--host H] [--port P] [--key F --cert F]`:
 * one request over the control link, the result printed as JSON. Exit 0 on a result, 1 on a
 * JSON-RPC error (printed to stderr), 2 on bad usage or a connection failure.
 */
import { readFileSync } from 'node:fs';
import { ControlCallError, ControlClient } from './client.js';
import { CONTROL_PORT } from './service.js';

export const CONTROL_CLI_HELP = `Usage: qperiph control call METHOD [PARAMS_JSON] [options]

Send one JSON-RPC request to a peripheral's control link and print the result.

Options:
  --host HOST      peripheral address (default 127.0.0.1)
  --port PORT      control port (default ${CONTROL_PORT})
  --key FILE       Core private key (PEM): connect with mutual TLS 1.3
  --cert FILE      Core certificate (PEM), with --key
  --local ADDR     local address to connect from
  --timeout MS     reply timeout (default 5000)
  --wait-notify N  after the reply, print notifications for N ms (e.g. change-group pushes)

Examples:
  qperiph control call Status.Get
  qperiph control call Controls.Set '{"Name":"gpio-out-1","Value":true}' --host 127.0.0.5
`;

export async function runControlCli(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: { out: (s: string) => void; err: (s: string) => void } = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  },
): Promise<number> {
  void env;
  if (argv.includes('--help') || argv.includes('-h') || argv[0] !== 'call' || argv.length < 2) {
    (argv.includes('--help') || argv.includes('-h') ? io.out : io.err)(CONTROL_CLI_HELP);
    return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
  }
  const opts: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const v = argv[i + 1];
      if (v === undefined) {
        io.err(`${a} needs a value\n`);
        return 2;
      }
      opts[a.slice(2)] = v;
      i++;
    } else positional.push(a);
  }
  const [method, paramsText] = positional;
  let params: unknown;
  if (paramsText !== undefined) {
    try {
      params = JSON.parse(paramsText);
    } catch (err) {
      io.err(`PARAMS_JSON is not JSON: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const port = Number(opts['port'] ?? CONTROL_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    io.err('--port must be 1..65535\n');
    return 2;
  }
  let client: ControlClient;
  try {
    const tlsOpt =
      opts['key'] && opts['cert']
        ? { key: readFileSync(opts['key'], 'utf8'), cert: readFileSync(opts['cert'], 'utf8') }
        : undefined;
    client = await ControlClient.connect({
      host: opts['host'] ?? '127.0.0.1',
      port,
      localAddress: opts['local'],
      tls: tlsOpt,
      timeoutMs: Number(opts['timeout'] ?? 5000),
    });
  } catch (err) {
    io.err(`cannot connect: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const result = await client.call(method!, params);
    io.out(JSON.stringify(result, null, 2) + '\n');
    const waitMs = Number(opts['wait-notify'] ?? 0);
    if (waitMs > 0) {
      await new Promise((r) => setTimeout(r, waitMs));
      for (const n of client.notifications) io.out(JSON.stringify(n) + '\n');
    }
    return 0;
  } catch (err) {
    if (err instanceof ControlCallError) {
      io.err(JSON.stringify({ code: err.rpcCode, message: err.message, data: err.data }) + '\n');
      return 1;
    }
    const refusal = client.unsolicitedErrors[0];
    io.err(`${(err as Error).message}${refusal ? `: ${refusal.message}` : ''}\n`);
    return 2;
  } finally {
    await client.close();
  }
}
