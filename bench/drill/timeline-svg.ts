/**
 * The drill timeline as an SVG picture: one row per device, time across,
 * each state a coloured bar until the next transition, faults as red marks,
 * step boundaries as dashed lines. Pure (report in, SVG text out).
 */
import { xmlEscape } from './junit.js';
import type { DrillReport } from './report.js';

export const STATE_COLOURS: Readonly<Record<string, string>> = {
  starting: '#c7d2fe',
  up: '#d1fae5',
  restarting: '#fde68a',
  exited: '#fcd34d',
  'power-cut': '#dc2626',
  'gave-up': '#111827',
  pushing: '#93c5fd',
  installing: '#3b82f6',
  committed: '#16a34a',
  'rolled-back': '#f97316',
  refused: '#a855f7',
  failed: '#b91c1c',
  timeout: '#6b7280',
  'network-cut': '#dc2626',
  'network-degrade': '#ea580c',
  'core-failover': '#dc2626',
  verified: '#bfdbfe',
  writing: '#60a5fa',
  written: '#2563eb',
  rebooting: '#1e40af',
  trial: '#86efac',
  committing: '#22c55e',
  'rolling-back': '#fdba74',
  stopping: '#e5e7eb',
  stopped: '#f3f4f6',
};

const MARKS = new Set(['power-cut']);
const POINT_MARKS = new Set(['network-cut', 'network-degrade', 'core-failover']);

export function renderTimelineSvg(r: DrillReport, o: { width?: number; rowHeight?: number } = {}): string {
  const width = o.width ?? 1000;
  const rowH = o.rowHeight ?? (r.devices.length > 40 ? 6 : 18);
  const left = r.devices.length > 40 ? 60 : 90;
  const top = 30;
  const legendPerRow = Math.max(1, Math.floor((width - left) / 110));
  const legendH = 16 * Math.ceil(Object.keys(STATE_COLOURS).length / legendPerRow) + 10;
  const height = top + r.devices.length * rowH + legendH + 20;
  const t0 = r.startedAtMs;
  const span = Math.max(1, r.finishedAtMs - t0);
  const x = (t: number): number =>
    left + ((Math.min(Math.max(t, t0), r.finishedAtMs) - t0) / span) * (width - left - 10);
  const f = (n: number): string => n.toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${xmlEscape(`drill ${r.scenario}: ${r.passed ? 'passed' : 'failed'}`)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="18" font-size="13">${xmlEscape(`drill ${r.scenario} — ${r.peripherals} peripherals, ${(r.wallMs / 1000).toFixed(1)} s, ${r.bricked} bricked, ${r.passed ? 'PASSED' : 'FAILED'}`)}</text>`,
  ];
  r.devices.forEach((d, row) => {
    const y = top + row * rowH;
    if (rowH >= 12) parts.push(`<text x="4" y="${f(y + rowH * 0.72)}">${xmlEscape(d.id)}</text>`);
    const all = [...d.timeline].sort((a, b) => a.atMs - b.atMs);
    // Network cuts and Core failovers happen beside the device's own state: marks, not bars.
    for (const e of all.filter((x) => POINT_MARKS.has(x.state)))
      parts.push(
        `<path d="M${f(x(e.atMs))} ${f(y)} v${rowH}" stroke="#dc2626" stroke-width="2"><title>${xmlEscape(`${d.id} ${e.state}${e.detail ? ` (${e.detail})` : ''}`)}</title></path>`,
      );
    const ev = all.filter((x) => !POINT_MARKS.has(x.state));
    ev.forEach((e, i) => {
      const end = ev[i + 1]?.atMs ?? r.finishedAtMs;
      const x1 = x(e.atMs);
      const w = Math.max(0.5, x(end) - x1);
      const colour = STATE_COLOURS[e.state] ?? '#9ca3af';
      parts.push(
        `<rect x="${f(x1)}" y="${f(y + 1)}" width="${f(w)}" height="${f(rowH - 2)}" fill="${colour}"><title>${xmlEscape(`${d.id} ${e.state}${e.detail ? ` (${e.detail})` : ''} at +${((e.atMs - t0) / 1000).toFixed(2)} s`)}</title></rect>`,
      );
      if (MARKS.has(e.state))
        parts.push(`<path d="M${f(x1)} ${f(y)} v${rowH}" stroke="#dc2626" stroke-width="2"/>`);
    });
    if (d.bricked)
      parts.push(
        `<text x="${f(width - 8)}" y="${f(y + rowH * 0.72)}" text-anchor="end" fill="#dc2626">bricked</text>`,
      );
  });
  for (const s of r.steps) {
    const sx = x(s.startedAtMs);
    parts.push(
      `<path d="M${f(sx)} ${top - 4} V${top + r.devices.length * rowH}" stroke="#374151" stroke-dasharray="3 3"/>`,
    );
  }
  const ly = top + r.devices.length * rowH + 16;
  Object.entries(STATE_COLOURS).forEach(([state, colour], i) => {
    const lx = left + (i % legendPerRow) * 110;
    const y = ly + Math.floor(i / legendPerRow) * 16;
    parts.push(
      `<rect x="${lx}" y="${y}" width="10" height="10" fill="${colour}"/><text x="${lx + 13}" y="${y + 9}">${state}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
