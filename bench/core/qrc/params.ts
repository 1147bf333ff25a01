/**
 * Readers for QRC method params. Each throws `QrcRpcError(-32602)` naming the field; none
 * changes anything, so a bad request is refused before any effect.
 */
import type { QrcValue } from './backend.js';
import { QRC_ERR, QrcRpcError } from './errors.js';
import type { QrcId } from './rpc.js';

/** Longest control, component or change-group name accepted. */
export const MAX_NAME_LENGTH = 1024;
/** Most names in one request. */
export const MAX_NAMES = 10_000;
/** Longest ramp, seconds. */
export const MAX_RAMP_SECONDS = 24 * 3600;

const bad = (why: string): QrcRpcError => new QrcRpcError(QRC_ERR.INVALID_PARAMS, why);

export function obj(params: unknown, what = 'params'): Record<string, unknown> {
  if (params === null || typeof params !== 'object' || Array.isArray(params))
    throw bad(`${what} must be an object`);
  return params as Record<string, unknown>;
}

export function name(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_NAME_LENGTH) {
    throw bad(`${what} must be a string of 1..${MAX_NAME_LENGTH} characters`);
  }
  return v;
}

/** An array of names: `["a","b"]`. */
export function nameList(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_NAMES)
    throw bad(`${what} must be an array of at most ${MAX_NAMES} names`);
  return v.map((x, i) => name(x, `${what}[${i}]`));
}

/** An array of `{Name}` objects (plain names are accepted too). */
export function nameObjectList(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_NAMES)
    throw bad(`${what} must be an array of at most ${MAX_NAMES} items`);
  return v.map((x, i) =>
    typeof x === 'string'
      ? name(x, `${what}[${i}]`)
      : name(obj(x, `${what}[${i}]`)['Name'], `${what}[${i}].Name`),
  );
}

export function value(v: unknown, what: string): QrcValue {
  if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' || typeof v === 'boolean')
    return v;
  throw bad(`${what} must be a finite number, a string or a boolean`);
}

export function ramp(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_RAMP_SECONDS) {
    throw bad(`${what} must be a number of seconds 0..${MAX_RAMP_SECONDS}`);
  }
  return v;
}

export function groupId(v: unknown): QrcId {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.length > 0 && v.length <= MAX_NAME_LENGTH) return v;
  throw bad(`Id must be a non-empty string (or a number)`);
}

export interface SetItem {
  name: string;
  value: QrcValue;
  ramp: number | undefined;
}

/** `[{Name, Value, Ramp?}]` (Component.Set). */
export function setList(v: unknown, what: string): SetItem[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_NAMES) {
    throw bad(`${what} must be an array of 1..${MAX_NAMES} items`);
  }
  return v.map((x, i) => {
    const o = obj(x, `${what}[${i}]`);
    return {
      name: name(o['Name'], `${what}[${i}].Name`),
      value: value(o['Value'], `${what}[${i}].Value`),
      ramp: ramp(o['Ramp'], `${what}[${i}].Ramp`),
    };
  });
}
