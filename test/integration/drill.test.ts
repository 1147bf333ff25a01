/**
 * The CI drill: bench/drill/scenarios/ci-small.json for real — 5 virtual
 * peripherals under their launchers and supervisors, each in its own network
 * namespace where this process may make them (else on 127.0.8.1-5), a
 * canary rollout, then every fault kind (power cut during the install,
 * network cut mid-download with a Range resume, corrupt bundle, foreign
 * signing key, downgrade, firmware failing its health check, a link shaped
 * by tc mid-download (namespaces only), Core failover mid-rollout). Every assertion of the report must pass, nobody bricked, and
 * the JSON report, JUnit XML and SVG timeline are written.
 */
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import t from 'tap';
import { findProjectRoot } from '../../firmware/paths.js';
import { runDrill } from '../../bench/drill/drill.js';
import { Progress } from '../../bench/drill/progress.js';
import { namespacesAvailable } from '../../bench/drill/netns.js';
import { FAULT_KINDS, NETNS_FAULTS, parseScenario } from '../../bench/drill/scenario.js';

t.setTimeout(480_000);
// The runner also reads the timeout from a top-level TAP comment.
t.comment('timeout=480000');
const root = findProjectRoot(process.env);
const built = await access(join(root, 'dist', 'firmware', 'launch.js')).then(
  () => true,
  () => false,
);

t.test(
  'ci-small drill: every fault kind, nobody bricked',
  { skip: built ? false : 'run `npm run build` first', timeout: 420_000 },
  async (t) => {
    const raw = JSON.parse(
      await readFile(join(root, 'bench', 'drill', 'scenarios', 'ci-small.json'), 'utf8'),
    ) as { steps: Array<{ fault: (typeof FAULT_KINDS)[number] }> };
    // Link shaping needs each device in its own namespace (root); without, those steps go.
    const ns = await namespacesAvailable();
    if (!ns.ok) t.comment(`no network namespaces (${ns.reason}): ${[...NETNS_FAULTS].join(', ')} not run`);
    const scenario = parseScenario(
      ns.ok ? raw : { ...raw, steps: raw.steps.filter((s) => !NETNS_FAULTS.has(s.fault)) },
    );
    const work = await mkdtemp(join(tmpdir(), 'qperiph-drill-ci-'));
    const out = join(work, 'out');
    const report = await runDrill({
      scenario,
      workDir: work,
      outDir: out,
      projectRoot: root,
      progress: new Progress(process.stderr, !!process.env['QPERIPH_DRILL_PROGRESS']),
      sampleMs: 0,
      bootParallel: 5,
      isolation: ns.ok ? 'netns' : 'loopback',
    });
    const failed = report.assertions.filter((a) => !a.ok);
    t.same(
      failed.map((a) => `${a.step} ${a.device ?? ''}: ${a.name} — ${a.message ?? ''}`),
      [],
      `every assertion passes (work dir ${work})`,
    );
    t.equal(report.bricked, 0, 'nobody bricked');
    t.ok(report.passed);
    const faults = new Set(report.steps.map((s) => s.fault));
    for (const k of FAULT_KINDS) if (ns.ok || !NETNS_FAULTS.has(k)) t.ok(faults.has(k), `ran ${k}`);
    // Each kind of check really happened.
    const names = new Set(report.assertions.filter((a) => a.ok).map((a) => a.name));
    for (const n of [
      'power was cut during the install',
      'download connections were cut',
      'devices resumed by HTTP Range',
      'primary coordinator killed mid-rollout, backup finished',
      'rollout result is refused',
      'rollout result is rolled-back',
      'slots unchanged',
      ...(ns.ok ? ['link shaped mid-download', 'the rest of the download went through the shaped link'] : []),
    ])
      t.ok(names.has(n), `checked: ${n}`);
    // Every device ran the last good firmware at the end.
    const last = report.steps.at(-1)!;
    t.same(
      report.devices.map((d) => d.finalVersion),
      report.devices.map(() => last.version),
    );
    const json = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { passed: boolean };
    t.equal(json.passed, true);
    t.equal(
      XMLValidator.validate(await readFile(join(out, 'junit.xml'), 'utf8')),
      true,
      'JUnit XML is well-formed',
    );
    t.equal(
      XMLValidator.validate(await readFile(join(out, 'timeline.svg'), 'utf8')),
      true,
      'SVG is well-formed',
    );
    if (report.passed) await rm(work, { recursive: true, force: true });
  },
);
