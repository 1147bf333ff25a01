/**
 * `qperiph drill SCENARIO.json [--work DIR] [--out DIR] [--peripherals N]`:
 * run a drill and print its verdict. Exit 0 passed, 1 failed, 2 usage error.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { isAbsolute } from 'node:path';
import { runDrill } from './drill.js';
import { Progress } from './progress.js';
import { summariseReport } from './report.js';
import { DrillError, loadScenario } from './scenario.js';

export const DRILL_HELP = `Usage: qperiph drill SCENARIO.json [options]

Starts N virtual peripherals on loopback (127.0.0.N by default, each with its
own state directory and app slots), rolls firmware out to them from a Core-side
coordinator and injects the scenario's faults: power cut during the install,
network cut or a tc-shaped link mid-download, corrupt bundle, foreign signing key, downgrade,
firmware failing its health check, Core failover mid-rollout.

Options:
  --work DIR         work directory (device state, bundles, logs);
                     default: a new directory under the system temp dir
  --out DIR          where report.json, junit.xml and timeline.svg go
                     (default: <work>/out)
  --peripherals N    override the scenario's peripheral count
  --boot-parallel N  peripherals booting at once (default 4)
  --sample-ms N      RSS sampling period for the peak-memory figure (default 1000, 0 = off)
  --isolation MODE   auto (default): netns when this process can make them, else
                     loopback; netns: each device in its own network namespace
                     with a veth to the drill (root; needed for network-degrade);
                     loopback: every device on 127.x in this namespace
  --quiet            no progress output
  -h, --help         this help

Scenarios ship in bench/drill/scenarios/ (ci-small.json, bench-10/50/100.json);
the format is described in docs/drills.md.
Exit status: 0 every assertion passed, 1 a drill assertion failed, 2 usage or scenario error.
`;

const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export async function runDrillCli(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        work: { type: 'string' },
        out: { type: 'string' },
        peripherals: { type: 'string' },
        'boot-parallel': { type: 'string' },
        'sample-ms': { type: 'string' },
        isolation: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${DRILL_HELP}`);
    return 2;
  }
  if (values['help']) {
    process.stdout.write(DRILL_HELP);
    return 0;
  }
  const file = positionals[0];
  if (!file || positionals.length > 1) {
    process.stderr.write(DRILL_HELP);
    return 2;
  }
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new DrillError('DRILL_ERR_USAGE', `--${name} must be an integer ${min}..${max}`);
    return n;
  };
  try {
    const peripherals = int('peripherals', 1, 250);
    const isolation = values['isolation'] ?? 'auto';
    if (isolation !== 'loopback' && isolation !== 'netns' && isolation !== 'auto')
      throw new DrillError('DRILL_ERR_USAGE', '--isolation must be loopback, netns or auto');
    const bootParallel = int('boot-parallel', 1, 64) ?? 4;
    const sampleMs = int('sample-ms', 0, 60_000) ?? 1000;
    const scenario = await loadScenario(file, peripherals === undefined ? {} : { peripherals });
    const work = values['work']
      ? resolve(String(values['work']))
      : await mkdtemp(join(tmpdir(), `qperiph-drill-${scenario.name}-`));
    const outArg = values['out'] ? String(values['out']) : join(work, 'out');
    const out = isAbsolute(outArg) ? outArg : resolve(outArg);
    const report = await runDrill({
      scenario,
      workDir: work,
      outDir: out,
      projectRoot: PROJECT_ROOT,
      progress: new Progress(process.stderr, !values['quiet']),
      sampleMs,
      bootParallel,
      isolation,
    });
    process.stdout.write(summariseReport(report));
    process.stdout.write(
      `report: ${join(out, 'report.json')}\njunit: ${join(out, 'junit.xml')}\ntimeline: ${join(out, 'timeline.svg')}\n`,
    );
    return report.passed ? 0 : 1;
  } catch (err) {
    if (err instanceof DrillError) {
      process.stderr.write(`${err.code}: ${err.message}\n`);
      return err.code === 'DRILL_ERR_SCENARIO' || err.code === 'DRILL_ERR_USAGE' ? 2 : 1;
    }
    throw err;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runDrillCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
