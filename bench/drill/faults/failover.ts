/**
 * Runs the rollout coordinator as a child process; for a Core failover the
 * primary is SIGKILLed once `killAfter` devices are installing, and a backup
 * coordinator resumes from the same journal.
 */
import { spawn } from 'node:child_process';
import { appendFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createJsonLogger } from '../../../firmware/log/logger.js';
import { Rollout, type DeviceResult, type RolloutTarget } from '../../core/rollout.js';
import type { CoordinatorConfig } from '../coordinator.js';
import { DrillError } from '../scenario.js';

export interface CoordinatorRun {
  results: DeviceResult[];
  /** Times (ms) at which the primary was killed and the backup started, when a failover happened. */
  failover: { killedAtMs: number; backupAtMs: number } | null;
}

function runOne(
  coordinatorJs: string,
  configFile: string,
  onProgress: (r: DeviceResult) => void,
  killWhen: ((r: DeviceResult, installing: number) => boolean) | null,
  stderrFile: string,
): Promise<{ results: DeviceResult[] | null; killedAtMs: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [coordinatorJs, configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const errParts: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => errParts.push(d));
    let results: DeviceResult[] | null = null;
    let killedAtMs: number | null = null;
    const installing = new Set<string>();
    createInterface({ input: child.stdout }).on('line', (line) => {
      let m: { type: string; results?: DeviceResult[] } & DeviceResult;
      try {
        m = JSON.parse(line) as typeof m;
      } catch {
        return;
      }
      if (m.type === 'done') results = m.results ?? null;
      else if (m.type === 'progress') {
        onProgress(m);
        if (m.state === 'installing') installing.add(m.id);
        if (killWhen && killedAtMs === null && killWhen(m, installing.size)) {
          killedAtMs = Date.now();
          child.kill('SIGKILL');
        }
      }
    });
    child.on('error', reject);
    child.on('close', () => {
      void writeFile(stderrFile, Buffer.concat(errParts), { flag: 'a' }).finally(() =>
        resolve({ results, killedAtMs }),
      );
    });
  });
}

export async function runCoordinated(
  config: CoordinatorConfig,
  configFile: string,
  o: {
    /** dist/bench/drill/coordinator.js of the built project. */
    coordinatorJs: string;
    failover: boolean;
    onProgress: (r: DeviceResult) => void;
    logFile: string;
  },
): Promise<CoordinatorRun> {
  await writeFile(configFile, JSON.stringify({ ...config, role: 'primary' }));
  if (!o.failover) {
    // No failover to drill: the coordinator runs in this process (no process start-up to pay).
    const fetchUrls = config.fetchUrls;
    const rollout = new Rollout({
      bundle: config.bundle,
      expectVersion: config.expectVersion,
      targets: config.targets,
      policy: config.policy,
      clientTls: config.clientTls,
      journalFile: config.journalFile,
      timeoutMs: config.timeoutMs,
      logger: createJsonLogger({
        bindings: { module: 'coordinator', role: 'in-process' },
        write: (line) => void appendFile(o.logFile, line).catch(() => undefined),
      }),
      ...(fetchUrls ? { fetchUrl: (t: RolloutTarget) => fetchUrls[t.id] as string } : {}),
      ...(config.pollMs ? { pollMs: config.pollMs } : {}),
      ...(config.refetchAfterMs ? { refetchAfterMs: config.refetchAfterMs } : {}),
    });
    rollout.on('progress', o.onProgress);
    return { results: await rollout.run(), failover: null };
  }
  const killAfter = Math.max(1, Math.ceil(config.targets.length / 3));
  const first = await runOne(
    o.coordinatorJs,
    configFile,
    o.onProgress,
    o.failover ? (_r, installing) => installing >= killAfter : null,
    o.logFile,
  );
  if (first.killedAtMs === null) {
    if (!first.results)
      throw new DrillError(
        'DRILL_ERR_COORDINATOR',
        `the coordinator ended without results (see ${o.logFile})`,
      );
    return { results: first.results, failover: null };
  }
  const backupFile = configFile.replace(/\.json$/, '') + '.backup.json';
  await writeFile(backupFile, JSON.stringify({ ...config, role: 'backup' }));
  const backupAtMs = Date.now();
  const second = await runOne(o.coordinatorJs, backupFile, o.onProgress, null, o.logFile);
  if (!second.results)
    throw new DrillError(
      'DRILL_ERR_COORDINATOR',
      `the backup coordinator ended without results (see ${o.logFile})`,
    );
  return { results: second.results, failover: { killedAtMs: first.killedAtMs, backupAtMs } };
}
