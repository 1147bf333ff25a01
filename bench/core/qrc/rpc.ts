/**
 * JSON-RPC 2.0 as QRC uses it: classify one message's text, build replies. Pure, never throws.
 *
 * Rules:
 *   - The text must be JSON (-32700 otherwise) holding one object (batches: -32600).
 *   - `jsonrpc` must be "2.0", `method` a non-empty string (-32600).
 *   - `id` is a finite number (QRC's rule) or, leniently, a non-empty string; it is echoed as is.
 *     A message without `id` is a notification: it runs, nothing is answered. `id: null` or any
 *     other id type is -32600.
 *   - `params` may be any JSON value (StatusGet is documented with `params: 0`).
 */
import { QRC_ERR, QRC_ERR_TEXT, type QrcErrorCode } from './errors.js';

export type QrcId = number | string;

export type QrcInbound =
  | { kind: 'request'; id: QrcId; method: string; params: unknown }
  | { kind: 'notification'; method: string; params: unknown }
  | { kind: 'invalid'; id: QrcId | null; code: QrcErrorCode; message: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

function validId(v: unknown): v is QrcId {
  return (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length > 0);
}

export function parseQrcMessage(text: string): QrcInbound {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return {
      kind: 'invalid',
      id: null,
      code: QRC_ERR.PARSE,
      message: `Parse error: ${(err as Error).message}`,
    };
  }
  const invalid = (id: QrcId | null, why: string): QrcInbound => ({
    kind: 'invalid',
    id,
    code: QRC_ERR.INVALID_REQUEST,
    message: `${QRC_ERR_TEXT[QRC_ERR.INVALID_REQUEST]}: ${why}`,
  });
  if (Array.isArray(value)) return invalid(null, 'batches are not supported');
  if (!isObj(value)) return invalid(null, 'a message must be a JSON object');
  const hasId = 'id' in value;
  const id = validId(value['id']) ? value['id'] : null;
  if (value['jsonrpc'] !== '2.0') return invalid(id, '"jsonrpc" must be "2.0"');
  if (hasId && id === null) return invalid(null, '"id" must be a number');
  const method = value['method'];
  if (typeof method !== 'string' || method.length === 0)
    return invalid(id, '"method" must be a non-empty string');
  const params = value['params'];
  return id === null ? { kind: 'notification', method, params } : { kind: 'request', id, method, params };
}

export function qrcResult(id: QrcId, result: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', id, result: result === undefined ? true : result };
}

export function qrcError(id: QrcId | null, code: number, message: string): Record<string, unknown> {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

export function qrcNotification(method: string, params: unknown): Record<string, unknown> {
  return { jsonrpc: '2.0', method, params };
}
