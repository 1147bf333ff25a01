/**
 * The rollout coordinator as its own process (the Core's firmware function),
 * so a drill can SIGKILL it mid-rollout and start a backup on the same
 * journal: `node dist/bench/drill/coordinator.js CONFIG.json`.
 * Prints one JSON line per device transition ({type:'progress', ...}) and a
 * final {type:'done', results} line on stdout.
 */
import { readFile } from 'node:fs/promises';
import { createJsonLogger } from '../../firmware/log/logger.js';
import { Rollout, type RolloutPolicy, type RolloutTarget } from '../core/rollout.js';

export interface CoordinatorConfig {
  role: 'primary' | 'backup';
  bundle: string;
  expectVersion: string;
  targets: RolloutTarget[];
  policy: RolloutPolicy;
  clientTls: { cert: string; key: string };
  journalFile: string;
  timeoutMs: number;
  /** Per target id: the URL it should fetch from (delivery 'fetch'). */
  fetchUrls?: Record<string, string>;
  pollMs?: number;
  refetchAfterMs?: number;
}

export async function runCoordinator(
  configFile: string,
  write = (s: string) => process.stdout.write(s),
): Promise<number> {
  const c = JSON.parse(await readFile(configFile, 'utf8')) as CoordinatorConfig;
  const logger = createJsonLogger({
    bindings: { module: 'coordinator', role: c.role },
    write: (line) => process.stderr.write(line),
  });
  const fetchUrls = c.fetchUrls;
  const rollout = new Rollout({
    bundle: c.bundle,
    expectVersion: c.expectVersion,
    targets: c.targets,
    policy: c.policy,
    clientTls: c.clientTls,
    journalFile: c.journalFile,
    timeoutMs: c.timeoutMs,
    logger,
    ...(fetchUrls ? { fetchUrl: (t: RolloutTarget) => fetchUrls[t.id] as string } : {}),
    ...(c.pollMs ? { pollMs: c.pollMs } : {}),
    ...(c.refetchAfterMs ? { refetchAfterMs: c.refetchAfterMs } : {}),
  });
  rollout.on('progress', (r) => write(JSON.stringify({ type: 'progress', ...r }) + '\n'));
  process.on('SIGTERM', () => rollout.stop());
  const results = await rollout.run();
  write(JSON.stringify({ type: 'done', results }) + '\n');
  return 0;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: coordinator.js CONFIG.json\n');
    process.exit(2);
  }
  runCoordinator(file).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`coordinator failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
