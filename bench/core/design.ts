/**
 * The emulated Core's design file (JSON): the design's name and code, and the peripherals it
 * uses, each by device name and part number, with the controls it exposes (and their initial
 * values) and the audio streams the Core opens on it. Parsed once: JSON syntax, then the schema
 * (ajv), then rules a schema cannot express (unique names, a stream's channels). Every problem is
 * reported with a JSON Pointer; the result is deep-frozen.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { QperiphError } from '../../firmware/errors.js';

export interface DesignControl {
  /** The peripheral's control name (e.g. `audio.out.1.gain`). */
  name: string;
  /** Pushed to the peripheral when the Core takes it over. */
  value?: number | string | boolean;
}

export interface DesignStream {
  direction: 'send' | 'receive';
  format: 'qlan' | 'aes67';
  address: string;
  port: number;
  channels: number[];
}

/** The Core's own audio peer towards a peripheral: a test tone to it, its inputs metered back. */
export interface DesignAudioPeer {
  format: 'qlan' | 'aes67';
  /** Channels each way (the peripheral's 1..N). */
  channels: number;
  toneHz: number;
}

export interface DesignPeripheral {
  /** The device name on the network (QDP `<name>`); also its component name over QRC. */
  name: string;
  partNumber: string;
  /** Pin the peripheral's address (else the address QDP reports is used). */
  address?: string;
  controlPort: number;
  httpsPort: number;
  /** Controls exposed to QRC and the dashboard; absent = every control the peripheral lists. */
  controls: DesignControl[] | null;
  streams: DesignStream[];
  /** The Core's audio peer (tone out, meters, loss and latency back); null = none. */
  audioPeer: DesignAudioPeer | null;
}

export interface Design {
  schemaVersion: 1;
  name: string;
  code: string;
  peripherals: DesignPeripheral[];
}

export interface DesignIssue {
  path: string;
  message: string;
}

export type DesignErrorCode = 'CORE_ERR_DESIGN_READ' | 'CORE_ERR_DESIGN_JSON' | 'CORE_ERR_DESIGN_INVALID';

export class DesignError extends QperiphError {
  readonly issues: readonly DesignIssue[];
  constructor(code: DesignErrorCode, message: string, issues: DesignIssue[] = []) {
    const lines = issues.map((i) => `\n  ${i.path || '/'}: ${i.message}`).join('');
    super(code, `${message}${lines}`);
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
  }
}

const NAME = '^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$';
const CONTROL = '^[A-Za-z0-9._:/-]{1,64}$';
const IPV4 =
  '^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$';

export const DESIGN_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  additionalProperties: false,
  required: ['schemaVersion', 'name', 'code', 'peripherals'],
  properties: {
    schemaVersion: { const: 1 },
    name: { type: 'string', minLength: 1, maxLength: 256 },
    code: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
    peripherals: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'partNumber'],
        properties: {
          name: { type: 'string', pattern: NAME },
          partNumber: { type: 'string', minLength: 1, maxLength: 64 },
          address: { type: 'string', pattern: IPV4 },
          controlPort: { type: 'integer', minimum: 1, maximum: 65535 },
          httpsPort: { type: 'integer', minimum: 1, maximum: 65535 },
          controls: {
            type: 'array',
            maxItems: 1024,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name'],
              properties: {
                name: { type: 'string', pattern: CONTROL },
                value: { type: ['number', 'string', 'boolean'] },
              },
            },
          },
          audioPeer: {
            type: 'object',
            additionalProperties: false,
            properties: {
              format: { enum: ['qlan', 'aes67'] },
              channels: { type: 'integer', minimum: 1, maximum: 16 },
              toneHz: { type: 'number', minimum: 20, maximum: 20000 },
            },
          },
          streams: {
            type: 'array',
            maxItems: 16,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['direction', 'address', 'port', 'channels'],
              properties: {
                direction: { enum: ['send', 'receive'] },
                format: { enum: ['qlan', 'aes67'] },
                address: { type: 'string', pattern: IPV4 },
                port: { type: 'integer', minimum: 1024, maximum: 65535 },
                channels: {
                  type: 'array',
                  minItems: 1,
                  maxItems: 16,
                  items: { type: 'integer', minimum: 1, maximum: 16 },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

let validator: ValidateFunction | null = null;
function validate(): ValidateFunction {
  validator ??= new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true }).compile(
    DESIGN_SCHEMA as object,
  );
  return validator;
}

function issueOf(e: ErrorObject): DesignIssue {
  if (e.keyword === 'required') {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    return { path: `${e.instancePath}/${missing}`, message: 'is required' };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return { path: `${e.instancePath}/${extra}`, message: 'is not a known property' };
  }
  return { path: e.instancePath, message: e.message ?? e.keyword };
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Validate a parsed JSON value; throws DesignError (CORE_ERR_DESIGN_INVALID) listing every problem. */
export function parseDesign(value: unknown, source = 'design'): Readonly<Design> {
  const check = validate();
  if (!check(value)) {
    const issues = (check.errors ?? []).map(issueOf);
    throw new DesignError('CORE_ERR_DESIGN_INVALID', `Invalid design (${source})`, issues);
  }
  const raw = value as {
    name: string;
    code: string;
    peripherals: Array<
      Omit<DesignPeripheral, 'controls' | 'streams' | 'controlPort' | 'httpsPort' | 'audioPeer'> & {
        audioPeer?: Partial<DesignAudioPeer>;
        controlPort?: number;
        httpsPort?: number;
        controls?: DesignControl[];
        streams?: Array<Omit<DesignStream, 'format'> & { format?: DesignStream['format'] }>;
      }
    >;
  };
  const issues: DesignIssue[] = [];
  const seen = new Map<string, number>();
  raw.peripherals.forEach((p, i) => {
    const key = p.name.toLowerCase();
    if (seen.has(key))
      issues.push({ path: `/peripherals/${i}/name`, message: `repeats /peripherals/${seen.get(key)}/name` });
    else seen.set(key, i);
    const controls = new Set<string>();
    (p.controls ?? []).forEach((c, j) => {
      const k = c.name.toLowerCase();
      if (controls.has(k))
        issues.push({ path: `/peripherals/${i}/controls/${j}/name`, message: 'is listed twice' });
      controls.add(k);
    });
    if (p.audioPeer?.format === 'aes67' && (p.audioPeer.channels ?? 2) > 8)
      issues.push({
        path: `/peripherals/${i}/audioPeer/channels`,
        message: 'AES67 carries at most 8 channels',
      });
    (p.streams ?? []).forEach((s, j) => {
      if (new Set(s.channels).size !== s.channels.length)
        issues.push({ path: `/peripherals/${i}/streams/${j}/channels`, message: 'lists a channel twice' });
    });
  });
  if (issues.length) throw new DesignError('CORE_ERR_DESIGN_INVALID', `Invalid design (${source})`, issues);
  return deepFreeze<Design>({
    schemaVersion: 1,
    name: raw.name,
    code: raw.code,
    peripherals: raw.peripherals.map((p) => ({
      name: p.name,
      partNumber: p.partNumber,
      ...(p.address ? { address: p.address } : {}),
      controlPort: p.controlPort ?? 1700,
      httpsPort: p.httpsPort ?? 8443,
      controls: p.controls ? p.controls.map((c) => ({ ...c })) : null,
      streams: (p.streams ?? []).map((s) => ({
        ...s,
        format: s.format ?? 'qlan',
        channels: [...s.channels],
      })),
      audioPeer: p.audioPeer
        ? {
            format: p.audioPeer.format ?? 'qlan',
            channels: p.audioPeer.channels ?? 2,
            toneHz: p.audioPeer.toneHz ?? 440,
          }
        : null,
    })),
  });
}

/** Parse design JSON text (CORE_ERR_DESIGN_JSON with the offset on a syntax error). */
export function parseDesignText(text: string, source = 'design'): Readonly<Design> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DesignError('CORE_ERR_DESIGN_JSON', `Invalid JSON in ${source}: ${(err as Error).message}`);
  }
  return parseDesign(value, source);
}

/** Read and parse a design file. */
export function loadDesign(file: string): Readonly<Design> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DesignError(
      'CORE_ERR_DESIGN_READ',
      `Cannot read design file ${file}: ${String((err as { code?: string }).code ?? err)}`,
    );
  }
  return parseDesignText(text, file);
}

/** The design entry for a device name (case-insensitive, as QDP names are). */
export function findPeripheral(
  design: Readonly<Design>,
  name: string,
): Readonly<DesignPeripheral> | undefined {
  const k = name.toLowerCase();
  return design.peripherals.find((p) => p.name.toLowerCase() === k);
}
