/**
 * JSON-RPC 2.0 for the control link: classify one frame's text as a request, a notification or
 * a response, or say precisely why it is not one. Pure.
 *
 * Rules (documented in docs/control-link.md):
 *   - `jsonrpc` must be exactly "2.0"; `method` a non-empty string; `params`, when present, an
 *     object or an array; `id` a number (finite) or a string, or absent for a notification.
 *   - Batches (a top-level array) are not supported: -32600.
 *   - `id: null` is refused as a request id (-32600) because it cannot be told from an error reply.
 */

export type RpcId = number | string;

/** Standard JSON-RPC codes, then ours (documented; QRC's numbers reused where they mean the same). */
export const RPC_ERR = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** QRC 5: too many change groups on this connection. */
  CHANGE_GROUPS_EXHAUSTED: 5,
  /** QRC 6. */
  UNKNOWN_CHANGE_GROUP: 6,
  /** QRC 8. */
  UNKNOWN_CONTROL: 8,
  /** Another Core owns this peripheral: this connection is read-only. */
  NOT_OWNER: 20,
  /** The control cannot be written from the link. */
  READ_ONLY_CONTROL: 21,
  /** The feature is not wired on this peripheral (no stream API, no serial ports, …). */
  NOT_AVAILABLE: 22,
  /** A serial port failed (open, write, configure). */
  SERIAL_FAILED: 23,
  /** No serial port of that name. */
  UNKNOWN_SERIAL_PORT: 24,
  /** The stream API refused the request. */
  STREAM_FAILED: 25,
  /** The connection is refused (untrusted, declined, plaintext in secure mode, too many clients). */
  REFUSED: 30,
  /** The frame was not valid UTF-8 or was empty. */
  BAD_FRAME: 31,
  /** The frame was larger than the maximum; the connection closes after this reply. */
  TOO_LARGE: 32,
} as const;

export class RpcError extends Error {
  readonly rpcCode: number;
  readonly data: unknown;
  constructor(rpcCode: number, message: string, data?: unknown) {
    super(message);
    this.rpcCode = rpcCode;
    this.data = data;
  }
}

export type RpcMessage =
  | { kind: 'request'; id: RpcId; method: string; params: unknown }
  | { kind: 'notification'; method: string; params: unknown }
  | {
      kind: 'response';
      id: RpcId | null;
      result?: unknown;
      error?: { code: number; message: string; data?: unknown };
    }
  | { kind: 'invalid'; id: RpcId | null; code: number; message: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function validId(v: unknown): v is RpcId {
  return (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string';
}

/** Classify a frame's text. Never throws. */
export function parseRpc(text: string): RpcMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return {
      kind: 'invalid',
      id: null,
      code: RPC_ERR.PARSE,
      message: `Parse error: ${(err as Error).message}`,
    };
  }
  if (Array.isArray(value)) {
    return {
      kind: 'invalid',
      id: null,
      code: RPC_ERR.INVALID_REQUEST,
      message: 'Batch requests are not supported',
    };
  }
  if (!isObj(value)) {
    return {
      kind: 'invalid',
      id: null,
      code: RPC_ERR.INVALID_REQUEST,
      message: 'A message must be a JSON object',
    };
  }
  const id = validId(value['id']) ? value['id'] : null;
  const bad = (message: string): RpcMessage => ({
    kind: 'invalid',
    id,
    code: RPC_ERR.INVALID_REQUEST,
    message,
  });
  if (value['jsonrpc'] !== '2.0') return bad('"jsonrpc" must be "2.0"');
  if ('id' in value && !validId(value['id'])) {
    if (!('method' in value) && value['id'] === null && 'error' in value) {
      return { kind: 'response', id: null, error: value['error'] as never };
    }
    return bad('"id" must be a number or a string');
  }
  if (!('method' in value)) {
    if (id !== null && ('result' in value || 'error' in value)) {
      return 'error' in value
        ? { kind: 'response', id, error: value['error'] as never }
        : { kind: 'response', id, result: value['result'] };
    }
    return bad('"method" is missing');
  }
  const method = value['method'];
  if (typeof method !== 'string' || method.length === 0) return bad('"method" must be a non-empty string');
  const params = value['params'];
  if (params !== undefined && params !== null && typeof params !== 'object') {
    return {
      kind: 'invalid',
      id,
      code: RPC_ERR.INVALID_PARAMS,
      message: '"params" must be an object or an array',
    };
  }
  return id === null ? { kind: 'notification', method, params } : { kind: 'request', id, method, params };
}

export function rpcResult(id: RpcId, result: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', id, result: result === undefined ? {} : result };
}

export function rpcError(
  id: RpcId | null,
  code: number,
  message: string,
  data?: unknown,
): Record<string, unknown> {
  const error: Record<string, unknown> = { code, message };
  if (data !== undefined) error['data'] = data;
  return { jsonrpc: '2.0', id, error };
}

export function rpcNotification(method: string, params: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', method, params };
}

// ---------------------------------------------------------------------------------------------
// Small param readers for method handlers: each throws RpcError(-32602) naming the field.

export function paramsObject(params: unknown): Record<string, unknown> {
  if (params === undefined || params === null) return {};
  if (!isObj(params)) throw new RpcError(RPC_ERR.INVALID_PARAMS, 'params must be an object');
  return params;
}

export function reqString(p: Record<string, unknown>, key: string, maxLength = 256): string {
  const v = p[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLength) {
    throw new RpcError(RPC_ERR.INVALID_PARAMS, `${key} must be a string of 1..${maxLength} characters`);
  }
  return v;
}

export function optString(p: Record<string, unknown>, key: string, maxLength = 256): string | undefined {
  return p[key] === undefined ? undefined : reqString(p, key, maxLength);
}

export function optNumber(
  p: Record<string, unknown>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const v = p[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new RpcError(RPC_ERR.INVALID_PARAMS, `${key} must be a number ${min}..${max}`);
  }
  return v;
}

export function optBoolean(p: Record<string, unknown>, key: string): boolean | undefined {
  const v = p[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new RpcError(RPC_ERR.INVALID_PARAMS, `${key} must be a boolean`);
  return v;
}

export function stringList(v: unknown, key: string, maxItems = 10000): string[] {
  if (!Array.isArray(v) || v.length > maxItems || !v.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new RpcError(RPC_ERR.INVALID_PARAMS, `${key} must be an array of names (at most ${maxItems})`);
  }
  return v as string[];
}
