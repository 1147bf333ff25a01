/** JUnit XML for CI: one <testsuite> per drill step, one <testcase> per assertion. Pure. */
import type { Assertion, DrillReport } from './report.js';

export function xmlEscape(s: string): string {
  return (
    s
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;')
      // XML 1.0 cannot carry most control characters at all.
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '\ufffd')
  );
}

const secs = (ms: number): string => (Math.max(0, ms) / 1000).toFixed(3);

export function renderJunit(r: DrillReport): string {
  const bySuite = new Map<string, Assertion[]>();
  for (const a of r.assertions) {
    const list = bySuite.get(a.step) ?? [];
    list.push(a);
    bySuite.set(a.step, list);
  }
  const stepTime = new Map(r.steps.map((s) => [s.name, s.finishedAtMs - s.startedAtMs]));
  const failures = r.assertions.filter((a) => !a.ok).length;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xmlEscape(`drill ${r.scenario}`)}" tests="${r.assertions.length}" failures="${failures}" time="${secs(r.wallMs)}">`,
  ];
  for (const [suite, list] of bySuite) {
    const f = list.filter((a) => !a.ok).length;
    out.push(
      `  <testsuite name="${xmlEscape(suite)}" tests="${list.length}" failures="${f}" errors="0" time="${secs(stepTime.get(suite) ?? 0)}" timestamp="${new Date(list[0]?.atMs ?? r.startedAtMs).toISOString()}">`,
    );
    for (const a of list) {
      const name = a.device ? `${a.device}: ${a.name}` : a.name;
      const head = `    <testcase classname="${xmlEscape(`drill.${r.scenario}.${suite}`)}" name="${xmlEscape(name)}" time="0">`;
      if (a.ok) out.push(head.replace(/>$/, ' />'));
      else
        out.push(
          head,
          `      <failure message="${xmlEscape(a.message ?? a.name)}" type="assertion">${xmlEscape(a.message ?? '')}</failure>`,
          '    </testcase>',
        );
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>', '');
  return out.join('\n');
}
