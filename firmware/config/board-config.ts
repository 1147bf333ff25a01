/**
 * Board configuration at the boundary: read the file, parse the JSON (with a
 * line and column on syntax errors), validate against
 * board-configs/board.schema.json plus the cross-field rules a schema cannot
 * express, report every problem with its JSON Pointer path, and hand back a
 * deep-frozen copy. Nothing downstream re-checks the board config.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { QperiphError } from '../errors.js';
import { findProjectRoot } from '../paths.js';
import type { BoardConfig } from './board-types.js';

/** One problem found in a config, located by a JSON Pointer ('' is the whole document). */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** The board config does not satisfy the schema or the cross-field rules. Lists every problem. */
export class BoardConfigError extends QperiphError {
  readonly issues: readonly ConfigIssue[];
  readonly source: string | undefined;
  constructor(issues: ConfigIssue[], source?: string) {
    const where = source ? ` (${source})` : '';
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const lines = issues.map((i) => `  ${i.path || '/'}: ${i.message}`);
    super('CONFIG_ERR_INVALID', `Invalid board config${where}: ${count}\n${lines.join('\n')}`);
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ ...i })));
    this.source = source;
  }
}

/** The config file could not be read (missing, unreadable, a directory). */
export class ConfigReadError extends QperiphError {
  readonly file: string;
  constructor(file: string, cause: unknown) {
    const why = (cause as { code?: unknown })?.code ?? (cause as Error)?.message ?? String(cause);
    super('CONFIG_ERR_READ', `Cannot read config file ${file}: ${String(why)}`, { cause });
    this.file = file;
  }
}

/** The config file is not valid JSON. `line` and `column` are 1-based; `offset` is 0-based. */
export class ConfigJsonError extends QperiphError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly offset: number;
  constructor(file: string, position: { line: number; column: number; offset: number }, detail: string) {
    super(
      'CONFIG_ERR_JSON',
      `Invalid JSON in ${file} at line ${position.line}, column ${position.column}: ${detail}`,
    );
    this.file = file;
    this.line = position.line;
    this.column = position.column;
    this.offset = position.offset;
  }
}

const SCHEMA_RELATIVE_PATH = join('board-configs', 'board.schema.json');

export { findProjectRoot };

let validator: ValidateFunction | undefined;

function getValidator(): ValidateFunction {
  if (validator) return validator;
  const schemaFile = join(findProjectRoot(), SCHEMA_RELATIVE_PATH);
  let schema: unknown;
  try {
    schema = JSON.parse(readFileSync(schemaFile, 'utf8'));
  } catch (err) {
    throw new QperiphError('CONFIG_ERR_SCHEMA', `Cannot load ${schemaFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  // Nullable objects are written `{ type: ['object', 'null'], $ref }`, so the $defs carry no
  // `type` of their own: strictTypes would reject that pattern, everything else stays strict.
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
  validator = ajv.compile(schema as object);
  return validator;
}

/** Freeze a value and everything reachable from it, in place. Returns the same value. */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Reflect.ownKeys(value)) {
      deepFreeze((value as Record<PropertyKey, unknown>)[key]);
    }
  }
  return value;
}

function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function describeAjvError(e: ErrorObject): ConfigIssue {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return {
        path: `${e.instancePath}/${escapePointerToken(String(p['missingProperty']))}`,
        message: 'is required',
      };
    case 'additionalProperties':
      return {
        path: `${e.instancePath}/${escapePointerToken(String(p['additionalProperty']))}`,
        message: 'is not an allowed property',
      };
    case 'enum': {
      const allowed = (p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return { path: e.instancePath, message: `must be one of ${allowed}` };
    }
    case 'const':
      return { path: e.instancePath, message: `must be ${JSON.stringify(p['allowedValue'])}` };
    case 'type': {
      const types = Array.isArray(p['type']) ? (p['type'] as string[]) : String(p['type']).split(',');
      return { path: e.instancePath, message: `must be ${types.join(' or ')}` };
    }
    default:
      return { path: e.instancePath, message: e.message ?? `fails ${e.keyword}` };
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function get(root: unknown, ...keys: Array<string | number>): unknown {
  let v: unknown = root;
  for (const k of keys) {
    if (typeof k === 'number' ? !Array.isArray(v) : !isObject(v)) return undefined;
    v = (v as Record<string | number, unknown>)[k];
  }
  return v;
}

/** Cross-field rules that JSON Schema cannot express. Defensive: runs on schema-invalid input too. */
function semanticIssues(cfg: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (!isObject(cfg)) return issues;
  // Only when isVirtual is a real boolean: a mistyped isVirtual is reported once, by the schema.
  const notVirtual = cfg['isVirtual'] === false;

  // GPIO lines: one user per (chip, line).
  const gpioLines: Array<{ path: string; entry: Json }> = [];
  for (const key of ['identifyLed', 'identifyButton'] as const) {
    const entry = get(cfg, 'gpio', key);
    if (isObject(entry)) gpioLines.push({ path: `/gpio/${key}`, entry });
  }
  for (const key of ['contactInputs', 'contactOutputs'] as const) {
    const list = get(cfg, 'gpio', key);
    if (Array.isArray(list)) {
      list.forEach((entry, i) => {
        if (isObject(entry)) gpioLines.push({ path: `/gpio/${key}/${i}`, entry });
      });
    }
  }
  const lineUsers = new Map<string, string>();
  for (const { path, entry } of gpioLines) {
    const { chip, line } = entry;
    if (typeof chip !== 'string' || !Number.isInteger(line)) continue;
    const key = `${chip}\u0000${String(line)}`;
    const first = lineUsers.get(key);
    if (first !== undefined) {
      issues.push({
        path: `${path}/line`,
        message: `line ${String(line)} on chip '${chip}' is already used by ${first}`,
      });
    } else {
      lineUsers.set(key, path);
    }
  }

  // Control names: unique across GPIO lines and serial ports, ignoring case.
  const named: Array<{ path: string; entry: Json }> = [...gpioLines];
  const serial = get(cfg, 'serial');
  if (Array.isArray(serial)) {
    serial.forEach((entry, i) => {
      if (isObject(entry)) named.push({ path: `/serial/${i}`, entry });
    });
  }
  const nameUsers = new Map<string, string>();
  for (const { path, entry } of named) {
    if (typeof entry['name'] !== 'string') continue;
    const key = entry['name'].toLowerCase();
    const first = nameUsers.get(key);
    if (first !== undefined) {
      issues.push({
        path: `${path}/name`,
        message: `name '${entry['name']}' is already used by ${first}/name`,
      });
    } else {
      nameUsers.set(key, path);
    }
  }

  // Serial ports: one port per device path; 'virtual:' paths only on a virtual board.
  const pathUsers = new Map<string, string>();
  if (Array.isArray(serial)) {
    serial.forEach((entry, i) => {
      const devicePath = get(entry, 'path');
      if (typeof devicePath !== 'string') return;
      const first = pathUsers.get(devicePath);
      if (first !== undefined) {
        issues.push({ path: `/serial/${i}/path`, message: `'${devicePath}' is already used by ${first}` });
      } else {
        pathUsers.set(devicePath, `/serial/${i}`);
      }
      if (devicePath.startsWith('virtual:') && notVirtual) {
        issues.push({
          path: `/serial/${i}/path`,
          message: "'virtual:' paths are only allowed when /isVirtual is true",
        });
      }
    });
  }

  // LAN B must be a different interface (and address) from LAN A.
  const lanA = get(cfg, 'network', 'lanA');
  const lanB = get(cfg, 'network', 'lanB');
  if (isObject(lanA) && isObject(lanB)) {
    if (typeof lanA['interface'] === 'string' && lanA['interface'] === lanB['interface']) {
      issues.push({
        path: '/network/lanB/interface',
        message: `must differ from /network/lanA/interface ('${lanA['interface']}')`,
      });
    }
    if (typeof lanA['address'] === 'string' && lanA['address'] === lanB['address']) {
      issues.push({
        path: '/network/lanB/address',
        message: `must differ from /network/lanA/address ('${lanA['address']}')`,
      });
    }
  }

  // Bindings without hardware only on a virtual board.
  const audioBinding = get(cfg, 'audio', 'binding');
  if (audioBinding === 'virtual' && notVirtual) {
    issues.push({ path: '/audio/binding', message: "'virtual' is only allowed when /isVirtual is true" });
  }
  if (get(cfg, 'gpio', 'binding') === 'fake' && notVirtual) {
    issues.push({ path: '/gpio/binding', message: "'fake' is only allowed when /isVirtual is true" });
  }

  // Capture/playback: null, or a device of the binding's kind with room for two periods.
  for (const dir of ['capture', 'playback'] as const) {
    const dev = get(cfg, 'audio', dir);
    if (!isObject(dev)) continue;
    const base = `/audio/${dir}`;
    const device = dev['device'];
    if (typeof device === 'string') {
      if (audioBinding === 'virtual' && device !== 'virtual') {
        issues.push({
          path: `${base}/device`,
          message: "must be 'virtual' when /audio/binding is 'virtual'",
        });
      } else if (audioBinding === 'alsa' && device === 'virtual') {
        issues.push({
          path: `${base}/device`,
          message: "must be an ALSA PCM name when /audio/binding is 'alsa'",
        });
      }
    }
    const period = dev['periodTimeUs'];
    const buffer = dev['bufferTimeUs'];
    if (Number.isInteger(period) && Number.isInteger(buffer) && (buffer as number) < 2 * (period as number)) {
      issues.push({
        path: `${base}/bufferTimeUs`,
        message: `must be at least two periods (>= ${2 * (period as number)})`,
      });
    }
  }
  return issues;
}

/**
 * Validate a board config value (already parsed from JSON) and return a deep-frozen copy.
 * Throws BoardConfigError listing every schema and cross-field problem with its JSON Pointer.
 */
export function parseBoardConfig(input: unknown, source?: string): Readonly<BoardConfig> {
  let copy: unknown;
  try {
    copy = structuredClone(input);
  } catch {
    throw new BoardConfigError([{ path: '', message: 'must be plain JSON data' }], source);
  }
  const validate = getValidator();
  const issues: ConfigIssue[] = [];
  if (!validate(copy)) {
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      const issue = describeAjvError(e);
      const key = `${issue.path}\u0000${issue.message}`;
      if (!seen.has(key)) {
        seen.add(key);
        issues.push(issue);
      }
    }
  }
  issues.push(...semanticIssues(copy));
  if (issues.length > 0) throw new BoardConfigError(issues, source);
  return deepFreeze(copy as BoardConfig);
}

export interface LoadBoardConfigOptions {
  /** Use this fixed IPv4 address for LAN A (validated like the file's own `address`). */
  lanAAddress?: string;
}

/**
 * Read, parse and validate a board config file (synchronously: it runs once, at start-up).
 * Throws ConfigReadError (CONFIG_ERR_READ), ConfigJsonError (CONFIG_ERR_JSON) or
 * BoardConfigError (CONFIG_ERR_INVALID).
 */
export function loadBoardConfig(file: string, options: LoadBoardConfigOptions = {}): Readonly<BoardConfig> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigReadError(file, err);
  }
  const value = parseJsonText(text, file);
  if (options.lanAAddress !== undefined) {
    const lanA = get(value, 'network', 'lanA');
    if (isObject(lanA)) lanA['address'] = options.lanAAddress;
  }
  return parseBoardConfig(value, file);
}

/** JSON.parse with a ConfigJsonError (line, column, offset) on bad input. A leading BOM is ignored. */
export function parseJsonText(text: string, file: string): unknown {
  const bom = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const body = bom ? text.slice(1) : text;
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    const found = findJsonSyntaxError(body) ?? {
      offset: Number(/at position (\d+)/.exec((err as Error).message)?.[1] ?? 0),
      message: (err as Error).message,
    };
    const offset = found.offset + bom;
    const before = text.slice(0, offset);
    const line = before.split('\n').length;
    const column = offset - (before.lastIndexOf('\n') + 1) + 1;
    throw new ConfigJsonError(file, { line, column, offset }, found.message);
  }
}

class JsonSyntaxAt {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

/**
 * Find the first JSON syntax error in `text` and its offset (V8's messages do not always carry
 * a position). Returns null when the text is valid JSON.
 */
function findJsonSyntaxError(text: string): { offset: number; message: string } | null {
  let i = 0;
  const n = text.length;
  const fail: (message: string, at?: number) => never = (message, at = i) => {
    throw new JsonSyntaxAt(at, at >= n ? 'unexpected end of input' : message);
  };
  const ch = (at: number): string => JSON.stringify(text[at] ?? '');
  const ws = (): void => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const str = (): void => {
    i++; // opening quote
    for (;;) {
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === undefined) fail('unterminated string', n);
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('invalid \\u escape', i);
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 2;
        } else {
          fail('invalid escape in string', i);
        }
      } else {
        i++;
      }
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`expected a property name in double quotes, found ${ch(i)}`);
        str();
        ws();
        if (text[i] !== ':') fail(`expected ':' after property name, found ${ch(i)}`);
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail(`expected ',' or '}' after property value, found ${ch(i)}`);
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail(`expected ',' or ']' after array element, found ${ch(i)}`);
      }
    } else if (c === '"') {
      str();
    } else if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
      m.lastIndex = i;
      const match = m.exec(text);
      if (!match) return fail('invalid number');
      i += match[0].length;
      if (i < n && /[.eE0-9]/.test(text[i]!)) fail('invalid number');
    } else if (c === 't' || c === 'f' || c === 'n') {
      const word = c === 't' ? 'true' : c === 'f' ? 'false' : 'null';
      for (let k = 0; k < word.length; k++) {
        if (text[i + k] !== word[k]) fail(`invalid literal (expected ${word})`, i + k);
      }
      i += word.length;
    } else {
      fail(`unexpected character ${ch(i)}`);
    }
  };
  try {
    value();
    ws();
    if (i < n) fail(`unexpected content after the JSON value: ${ch(i)}`);
    return null;
  } catch (err) {
    if (err instanceof JsonSyntaxAt) return { offset: err.offset, message: err.message };
    return null; // e.g. RangeError on absurd nesting: fall back to the engine's message
  }
}
