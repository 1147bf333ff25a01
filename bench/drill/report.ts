/**
 * The drill report: per device timeline, final slot and version; per step the
 * rollout results; every assertion with pass/fail. Written as JSON; the JUnit
 * and SVG renderers read the same structure.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DeviceResult } from '../core/rollout.js';
import type { FaultKind } from './scenario.js';
import type { TimelineEvent } from './supervisor.js';

export interface DeviceReport {
  id: string;
  address: string;
  timeline: TimelineEvent[];
  finalVersion: string | null;
  bootedSlot: string | null;
  primarySlot: string | null;
  phase: string | null;
  healthy: boolean;
  /** Not answering, or not running a committed slot, at the end. */
  bricked: boolean;
  runs: number;
}

export interface StepReport {
  name: string;
  fault: FaultKind;
  devices: string[];
  version: string;
  startedAtMs: number;
  finishedAtMs: number;
  results: DeviceResult[];
}

export interface Assertion {
  step: string;
  device?: string;
  name: string;
  ok: boolean;
  message?: string;
  /** Time the check was made (JUnit "time" is its share of the step). */
  atMs: number;
}

export interface DrillReport {
  scenario: string;
  peripherals: number;
  startedAtMs: number;
  finishedAtMs: number;
  wallMs: number;
  peakRssBytes: number | null;
  devices: DeviceReport[];
  steps: StepReport[];
  assertions: Assertion[];
  bricked: number;
  passed: boolean;
}

export function finishReport(r: Omit<DrillReport, 'passed' | 'bricked' | 'wallMs'>): DrillReport {
  const bricked = r.devices.filter((d) => d.bricked).length;
  return {
    ...r,
    wallMs: r.finishedAtMs - r.startedAtMs,
    bricked,
    passed: bricked === 0 && r.assertions.every((a) => a.ok),
  };
}

export async function writeJsonReport(file: string, r: DrillReport): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(r, null, 2) + '\n');
}

/** A few human lines: verdict, counts, failed assertions. */
export function summariseReport(r: DrillReport): string {
  const failed = r.assertions.filter((a) => !a.ok);
  const lines = [
    `drill ${r.scenario}: ${r.passed ? 'PASSED' : 'FAILED'} — ${r.peripherals} peripherals, ` +
      `${r.steps.length} steps, ${r.assertions.length - failed.length}/${r.assertions.length} assertions, ` +
      `${r.bricked} bricked, ${(r.wallMs / 1000).toFixed(1)} s` +
      (r.peakRssBytes !== null ? `, peak RSS ${(r.peakRssBytes / 1048576).toFixed(0)} MiB` : ''),
  ];
  for (const a of failed.slice(0, 20))
    lines.push(
      `  FAIL ${a.step}${a.device ? ` ${a.device}` : ''}: ${a.name}${a.message ? ` — ${a.message}` : ''}`,
    );
  if (failed.length > 20) lines.push(`  … ${failed.length - 20} more`);
  return lines.join('\n') + '\n';
}
