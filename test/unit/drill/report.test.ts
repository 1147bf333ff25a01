/** Report, JUnit XML and SVG timeline from a fixed drill; the progress bar. */
import { Writable } from 'node:stream';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import t from 'tap';
import { renderJunit, xmlEscape } from '../../../bench/drill/junit.js';
import { Progress, renderBar } from '../../../bench/drill/progress.js';
import { finishReport, summariseReport, type DrillReport } from '../../../bench/drill/report.js';
import { renderTimelineSvg } from '../../../bench/drill/timeline-svg.js';

const T0 = Date.UTC(2026, 10, 25, 3, 0, 0);

function fixed(ok = true): DrillReport {
  return finishReport({
    scenario: 'fixed <&>',
    peripherals: 2,
    startedAtMs: T0,
    finishedAtMs: T0 + 20_000,
    peakRssBytes: 300 * 1048576,
    devices: [
      {
        id: 'dev1',
        address: '127.0.8.1',
        timeline: [
          { atMs: T0, state: 'starting' },
          { atMs: T0 + 2000, state: 'up' },
          { atMs: T0 + 5000, state: 'pushing' },
          { atMs: T0 + 5500, state: 'installing', detail: 'writing' },
          { atMs: T0 + 6000, state: 'power-cut', detail: 'phase writing' },
          { atMs: T0 + 6100, state: 'starting' },
          { atMs: T0 + 9000, state: 'committed' },
        ],
        finalVersion: '0.1.0-drill.1',
        bootedSlot: 'b',
        primarySlot: 'b',
        phase: 'idle',
        healthy: true,
        bricked: false,
        runs: 3,
      },
      {
        id: 'dev2',
        address: '127.0.8.2',
        timeline: [
          { atMs: T0, state: 'starting' },
          { atMs: T0 + 5000, state: 'refused', detail: 'UPDATE_ERR_SIGNATURE' },
        ],
        finalVersion: ok ? '0.1.0' : null,
        bootedSlot: ok ? 'a' : null,
        primarySlot: ok ? 'a' : null,
        phase: ok ? 'idle' : null,
        healthy: ok,
        bricked: !ok,
        runs: 1,
      },
    ],
    steps: [
      {
        name: 'power cut',
        fault: 'power-cut',
        devices: ['dev1'],
        version: '0.1.0-drill.1',
        startedAtMs: T0 + 4000,
        finishedAtMs: T0 + 10_000,
        results: [],
      },
      {
        name: 'foreign key',
        fault: 'foreign-key',
        devices: ['dev2'],
        version: '0.1.0-drill.2',
        startedAtMs: T0 + 4000,
        finishedAtMs: T0 + 8000,
        results: [],
      },
    ],
    assertions: [
      { step: 'power cut', device: 'dev1', name: 'back on a committed slot', ok: true, atMs: T0 + 10_000 },
      { step: 'foreign key', device: 'dev2', name: 'rollout result is refused', ok: true, atMs: T0 + 8000 },
      ...(ok
        ? []
        : [
            {
              step: 'final',
              device: 'dev2',
              name: 'not bricked',
              ok: false,
              message: 'status <unreachable> & "gone"',
              atMs: T0 + 20_000,
            },
          ]),
    ],
  });
}

t.test('finishReport: verdict, bricked count, wall time', async (t) => {
  t.match(fixed(), { passed: true, bricked: 0, wallMs: 20_000 });
  t.match(fixed(false), { passed: false, bricked: 1 });
  t.match(
    summariseReport(fixed()),
    /PASSED — 2 peripherals, 2 steps, 2\/2 assertions, 0 bricked, 20\.0 s, peak RSS 300 MiB/,
  );
  t.match(summariseReport(fixed(false)), /FAIL final dev2: not bricked — status <unreachable>/);
});

t.test('JUnit XML: one suite per step, failures with messages, escaped', async (t) => {
  const xml = renderJunit(fixed(false));
  t.equal(XMLValidator.validate(xml), true, 'well-formed');
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml) as {
    testsuites: {
      tests: string;
      failures: string;
      name: string;
      testsuite: Array<{ name: string; tests: string; failures: string; testcase: unknown }>;
    };
  };
  t.equal(doc.testsuites.name, 'drill fixed <&>');
  t.equal(doc.testsuites.tests, '3');
  t.equal(doc.testsuites.failures, '1');
  t.same(
    doc.testsuites.testsuite.map((s) => s.name),
    ['power cut', 'foreign key', 'final'],
  );
  const final = doc.testsuites.testsuite[2] as {
    failures: string;
    testcase: { name: string; failure: { message: string } };
  };
  t.equal(final.failures, '1');
  t.equal(final.testcase.name, 'dev2: not bricked');
  t.equal(final.testcase.failure.message, 'status <unreachable> & "gone"');
  t.equal(xmlEscape('a\u0001b'), 'a\ufffdb', 'control characters replaced');
  t.equal(XMLValidator.validate(renderJunit(fixed())), true);
  t.notMatch(renderJunit(fixed()), /<failure/);
});

t.test('SVG timeline: a row per device, a bar per state, fault marks, step lines', async (t) => {
  const svg = renderTimelineSvg(fixed(false));
  t.equal(XMLValidator.validate(svg), true, 'well-formed');
  t.equal((svg.match(/<rect [^>]*><title>/g) ?? []).length, 9, 'one bar per timeline event');
  t.match(svg, /dev1 power-cut \(phase writing\) at \+6\.00 s/);
  t.match(svg, /stroke="#dc2626"/, 'the power cut is marked');
  t.equal((svg.match(/stroke-dasharray/g) ?? []).length, 2, 'one line per step');
  t.match(svg, />bricked</);
  t.match(svg, /fixed &lt;&amp;&gt;/);
  // Bars stay inside the picture.
  for (const m of svg.matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/g))
    t.ok(Number(m[1]) + Number(m[2]) <= 1000.5, `bar ends inside (${m[1]} + ${m[2]})`);
  // Many devices: thin rows without labels.
  const many = fixed();
  many.devices = Array.from({ length: 100 }, (_, i) => ({ ...many.devices[0]!, id: `dev${i + 1}` }));
  const big = renderTimelineSvg(many);
  t.equal(XMLValidator.validate(big), true);
  t.notMatch(big, />dev1</, 'no labels on thin rows');
});

class Sink extends Writable {
  text = '';
  isTTY = false;
  columns = 80;
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

t.test('progress bar', async (t) => {
  t.equal(
    renderBar({ step: 'rollout', done: 5, total: 10, up: 9, peripherals: 10, failed: 1 }, 10, 12_000),
    '[#####-----]  50% rollout 5/10 · up 9/10 · 1 failed · 12 s',
  );
  t.equal(
    renderBar({ step: 's', done: 0, total: 0, up: 0, peripherals: 0, failed: 0 }, 4),
    '[----]   0% s 0/0 · up 0/0 · 0 s',
  );
  // Not a TTY: plain lines, throttled, one on each step change and at the end of a step.
  const out = new Sink();
  let now = 0;
  const p = new Progress(out as unknown as NodeJS.WritableStream, true, () => now, 5000);
  const c = { step: 'boot', done: 0, total: 3, up: 0, peripherals: 3, failed: 0 };
  p.update(c);
  now = 1000;
  p.update({ ...c, done: 1 });
  now = 6000;
  p.update({ ...c, done: 2 });
  now = 6500;
  p.update({ ...c, done: 3 });
  p.update({ ...c, done: 3 });
  p.update({ ...c, step: 'next', done: 0 });
  const lines = out.text.trim().split('\n');
  t.equal(lines.length, 4, out.text);
  t.notOk(out.text.includes('\r') || out.text.includes('\u001b'), 'no control sequences off a TTY');
  // A TTY: redrawn in place.
  const tty = new Sink();
  tty.isTTY = true;
  const q = new Progress(tty as unknown as NodeJS.WritableStream, true, () => 0);
  q.update(c);
  q.update({ ...c, done: 1 });
  q.note('hello');
  q.end();
  t.match(tty.text, /^\r\[/);
  t.ok(tty.text.includes('\r\u001b[Khello\n'), 'a note clears the bar line');
  // Disabled: silent.
  const off = new Sink();
  new Progress(off as unknown as NodeJS.WritableStream, false).update(c);
  t.equal(off.text, '');
});
