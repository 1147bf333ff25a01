/**
 * Drill benchmark: wall time, peak memory (sum of the RSS of every drill
 * process, sampled every second) and bricked count for drills of 10, 50 and
 * 100 peripherals (bench/drill/scenarios/bench-N.json: a canary-wave rollout
 * to all, then a power cut during the install on 10 %).
 *
 *   node dist/bench/perf/drill.js [10 50 100] [--boot-parallel N] [--isolation MODE] [--keep]
 *
 * Isolation defaults to auto: each peripheral in its own network namespace when
 * root (so a hundred do not all hear each other's QDP announcements), else loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runDrill } from '../drill/drill.js';
import { Progress } from '../drill/progress.js';
import { loadScenario } from '../drill/scenario.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const bpAt = args.indexOf('--boot-parallel');
const bootParallel = bpAt >= 0 ? Number(args[bpAt + 1]) : 4;
const isoAt = args.indexOf('--isolation');
const isoArg = isoAt >= 0 ? args[isoAt + 1] : 'auto';
const isolation = isoArg === 'loopback' || isoArg === 'netns' ? isoArg : 'auto';
const sizes = args.filter((a, i) => /^\d+$/.test(a) && !(bpAt >= 0 && i === bpAt + 1)).map(Number);
const runs = sizes.length ? sizes : [10, 50, 100];

process.stdout.write(
  `drill benchmark: ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, boot parallel ${bootParallel}, isolation ${isolation}\n`,
);
process.stdout.write(
  'peripherals  wall s  boot s  rollout s  power-cut s  peak RSS MiB  MiB/peripheral  bricked  passed\n',
);
for (const n of runs) {
  const file = join(root, 'bench', 'drill', 'scenarios', `bench-${[10, 50, 100].includes(n) ? n : 10}.json`);
  const scenario = await loadScenario(file, { peripherals: n });
  const work = await mkdtemp(join(tmpdir(), `qperiph-drill-bench-${n}-`));
  const report = await runDrill({
    scenario,
    workDir: work,
    outDir: join(work, 'out'),
    projectRoot: root,
    progress: new Progress(process.stderr, true),
    sampleMs: 1000,
    bootParallel,
    isolation,
    cleanup: !keep,
  });
  const first = report.steps[0];
  const boot = first ? (first.startedAtMs - report.startedAtMs) / 1000 : 0;
  const step = (i: number): string => {
    const s = report.steps[i];
    return s ? ((s.finishedAtMs - s.startedAtMs) / 1000).toFixed(1) : '-';
  };
  const mib = (report.peakRssBytes ?? 0) / 1048576;
  process.stdout.write(
    `${String(n).padStart(11)}  ${(report.wallMs / 1000).toFixed(1).padStart(6)}  ${boot.toFixed(1).padStart(6)}  ${step(0).padStart(9)}  ${step(1).padStart(11)}  ${mib.toFixed(0).padStart(12)}  ${(mib / n).toFixed(1).padStart(14)}  ${String(report.bricked).padStart(7)}  ${report.passed ? 'yes' : 'no'}\n`,
  );
  const failed = report.assertions.filter((a) => !a.ok);
  for (const a of failed.slice(0, 5))
    process.stdout.write(`    FAIL ${a.step} ${a.device ?? ''}: ${a.name} — ${a.message ?? ''}\n`);
  if (keep) process.stdout.write(`    work: ${work}\n`);
  else await rm(work, { recursive: true, force: true });
}
