/**
 * A drill scenario at the boundary: parsed once (JSON schema via ajv plus the
 * cross-step rules a schema cannot say), every problem reported with its JSON
 * Pointer, handed back deep-frozen. Nothing downstream re-checks it.
 */
import { readFile } from 'node:fs/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject } from 'ajv';
import { deepFreeze } from '../../firmware/config/board-config.js';
import { QperiphError } from '../../firmware/errors.js';
import type { RolloutPolicy } from '../core/rollout.js';

export const FAULT_KINDS = [
  'none',
  'power-cut',
  'network-cut',
  'network-degrade',
  'corrupt',
  'foreign-key',
  'downgrade',
  'bad-health',
  'core-failover',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults on the download path: the device must fetch the bundle (through a proxy). */
const NETWORK_FAULTS: ReadonlySet<FaultKind> = new Set(['network-cut', 'network-degrade']);

/** Faults that need each device in its own network namespace (a veth to shape). */
export const NETNS_FAULTS: ReadonlySet<FaultKind> = new Set(['network-degrade']);

export type DeviceSelection = 'all' | number[] | { percent: number };

export interface ScenarioStep {
  name: string;
  fault: FaultKind;
  devices: DeviceSelection;
  policy: RolloutPolicy;
  delivery: 'push' | 'fetch';
  /** Run at the same time as the previous step (device sets must not overlap). */
  parallel: boolean;
}

export interface Scenario {
  name: string;
  peripherals: number;
  /** First three octets of the device addresses, e.g. '127.0.8'. */
  addressPrefix: string;
  /** Host part of device 1 (device N is firstHost + N - 1). */
  firstHost: number;
  healthDeadlineMs: number;
  stepTimeoutMs: number;
  bootTimeoutMs: number;
  /** Seed for the random points (power cut, network cut). */
  seed: number;
  steps: ScenarioStep[];
}

export type DrillErrorCode =
  'DRILL_ERR_SCENARIO' | 'DRILL_ERR_USAGE' | 'DRILL_ERR_BOOT' | 'DRILL_ERR_COORDINATOR';

export class DrillError extends QperiphError {
  declare readonly code: DrillErrorCode;
  readonly issues: Array<{ path: string; message: string }>;
  constructor(
    code: DrillErrorCode,
    message: string,
    issues: Array<{ path: string; message: string }> = [],
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.issues = issues;
  }
}

const POLICY = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['kind', 'maxInFlight'],
      properties: {
        kind: { const: 'all-at-once' },
        maxInFlight: { type: 'integer', minimum: 1, maximum: 1000 },
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['kind', 'canary', 'waveSize', 'maxInFlight', 'haltOnFailure'],
      properties: {
        kind: { const: 'canary-waves' },
        canary: { type: 'integer', minimum: 0, maximum: 1000 },
        waveSize: { type: 'integer', minimum: 1, maximum: 1000 },
        maxInFlight: { type: 'integer', minimum: 1, maximum: 1000 },
        haltOnFailure: { type: 'boolean' },
      },
    },
  ],
};

export const SCENARIO_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'peripherals', 'steps'],
  properties: {
    $schema: { type: 'string' },
    name: { type: 'string', minLength: 1, maxLength: 100 },
    peripherals: { type: 'integer', minimum: 1, maximum: 250 },
    addressPrefix: {
      type: 'string',
      pattern: '^127\\.(25[0-5]|2[0-4]\\d|1?\\d?\\d)\\.(25[0-5]|2[0-4]\\d|1?\\d?\\d)$',
    },
    firstHost: { type: 'integer', minimum: 1, maximum: 254 },
    healthDeadlineMs: { type: 'integer', minimum: 100, maximum: 600_000 },
    stepTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000 },
    bootTimeoutMs: { type: 'integer', minimum: 1000, maximum: 3_600_000 },
    seed: { type: 'integer' },
    steps: {
      type: 'array',
      minItems: 1,
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['fault', 'devices'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 100 },
          fault: { enum: [...FAULT_KINDS] },
          devices: {
            oneOf: [
              { const: 'all' },
              { type: 'array', minItems: 1, items: { type: 'integer', minimum: 1 } },
              {
                type: 'object',
                additionalProperties: false,
                required: ['percent'],
                properties: { percent: { type: 'number', exclusiveMinimum: 0, maximum: 100 } },
              },
            ],
          },
          policy: POLICY,
          delivery: { enum: ['push', 'fetch'] },
          parallel: { type: 'boolean' },
        },
      },
    },
  },
} as const;

let validate: ReturnType<Ajv2020['compile']> | null = null;

function describe(e: ErrorObject): { path: string; message: string } {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'required')
    return { path: `${e.instancePath}/${String(p['missingProperty'])}`, message: 'is required' };
  if (e.keyword === 'additionalProperties')
    return {
      path: `${e.instancePath}/${String(p['additionalProperty'])}`,
      message: 'is not an allowed property',
    };
  return { path: e.instancePath, message: e.message ?? e.keyword };
}

/** The device indices (1-based) a step touches, for a drill of `n` peripherals. */
export function selectDevices(sel: DeviceSelection, n: number): number[] {
  if (sel === 'all') return Array.from({ length: n }, (_, i) => i + 1);
  if (Array.isArray(sel)) return [...new Set(sel)].sort((a, b) => a - b);
  const k = Math.max(1, Math.ceil((sel.percent / 100) * n));
  return Array.from({ length: Math.min(k, n) }, (_, i) => i + 1);
}

/** Validate a parsed JSON value; `override.peripherals` replaces the count (CLI --peripherals). */
export function parseScenario(value: unknown, override: { peripherals?: number } = {}): Scenario {
  if (!validate) {
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
    validate = ajv.compile(SCENARIO_SCHEMA);
  }
  if (!validate(value)) {
    const issues = (validate.errors ?? []).map(describe);
    throw new DrillError(
      'DRILL_ERR_SCENARIO',
      `invalid scenario: ${issues.map((i) => `${i.path || '/'} ${i.message}`).join('; ')}`,
      issues,
    );
  }
  const v = value as Record<string, unknown> & { steps: Array<Record<string, unknown>> };
  const peripherals = override.peripherals ?? (v['peripherals'] as number);
  const addressPrefix = (v['addressPrefix'] as string | undefined) ?? '127.0.0';
  const firstHost = (v['firstHost'] as number | undefined) ?? 2;
  const issues: Array<{ path: string; message: string }> = [];
  if (!Number.isInteger(peripherals) || peripherals < 1 || peripherals > 250)
    issues.push({ path: '/peripherals', message: 'must be 1..250' });
  if (firstHost + peripherals - 1 > 254)
    issues.push({ path: '/firstHost', message: `${peripherals} peripherals from .${firstHost} pass .254` });
  const steps: ScenarioStep[] = v.steps.map((s, i) => {
    const fault = s['fault'] as FaultKind;
    const devices = s['devices'] as DeviceSelection;
    if (Array.isArray(devices) && devices.some((d) => d > peripherals))
      issues.push({ path: `/steps/${i}/devices`, message: `names a device above ${peripherals}` });
    const delivery =
      (s['delivery'] as 'push' | 'fetch' | undefined) ?? (NETWORK_FAULTS.has(fault) ? 'fetch' : 'push');
    if (NETWORK_FAULTS.has(fault) && delivery !== 'fetch')
      issues.push({ path: `/steps/${i}/delivery`, message: `a ${fault} needs delivery "fetch"` });
    return {
      name: (s['name'] as string | undefined) ?? `${i + 1}: ${fault}`,
      fault,
      devices,
      policy: (s['policy'] as RolloutPolicy | undefined) ?? { kind: 'all-at-once', maxInFlight: 16 },
      delivery,
      parallel: (s['parallel'] as boolean | undefined) ?? false,
    };
  });
  // Parallel steps must not share a device.
  for (let i = 0; i < steps.length; i++) {
    if (!steps[i]!.parallel) continue;
    if (i === 0) {
      issues.push({ path: '/steps/0/parallel', message: 'the first step has nothing to run beside' });
      continue;
    }
    const mine = new Set(selectDevices(steps[i]!.devices, peripherals));
    for (let j = i - 1; j >= 0; j--) {
      const other = selectDevices(steps[j]!.devices, peripherals);
      if (other.some((d) => mine.has(d)))
        issues.push({ path: `/steps/${i}/devices`, message: `shares devices with parallel step ${j}` });
      if (!steps[j]!.parallel) break;
    }
  }
  if (issues.length)
    throw new DrillError(
      'DRILL_ERR_SCENARIO',
      `invalid scenario: ${issues.map((x) => `${x.path} ${x.message}`).join('; ')}`,
      issues,
    );
  return deepFreeze({
    name: v['name'] as string,
    peripherals,
    addressPrefix,
    firstHost,
    healthDeadlineMs: (v['healthDeadlineMs'] as number | undefined) ?? 3000,
    stepTimeoutMs: (v['stepTimeoutMs'] as number | undefined) ?? 120_000,
    bootTimeoutMs: (v['bootTimeoutMs'] as number | undefined) ?? 60_000,
    seed: (v['seed'] as number | undefined) ?? 1,
    steps,
  }) as Scenario;
}

/** Read and parse a scenario file (JSON syntax errors are typed too). */
export async function loadScenario(file: string, override: { peripherals?: number } = {}): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DrillError('DRILL_ERR_SCENARIO', `cannot read ${file}: ${(err as Error).message}`, [], {
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new DrillError('DRILL_ERR_SCENARIO', `${file} is not JSON: ${(err as Error).message}`, [], {
      cause: err,
    });
  }
  return parseScenario(json, override);
}

/** The group of steps that run together: steps[i] plus the following `parallel` ones. */
export function stepGroups(steps: readonly ScenarioStep[]): number[][] {
  const groups: number[][] = [];
  steps.forEach((s, i) => {
    if (s.parallel && groups.length) groups[groups.length - 1]!.push(i);
    else groups.push([i]);
  });
  return groups;
}
