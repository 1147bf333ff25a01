/**
 * The stateless QRC methods: Control.* and Component.*. Each validates everything it can before
 * touching the backend, so a refused request changes nothing. Backend failures map to QRC codes
 * by `toRpcError`.
 */
import { QrcBackendError, type QrcBackend, type QrcControlState, type QrcValue } from './backend.js';
import { QRC_ERR, QrcRpcError } from './errors.js';
import * as P from './params.js';

export type MethodResult = unknown;

/** A backend (or other) failure as the QRC error to answer with. */
export function toRpcError(err: unknown): QrcRpcError {
  if (err instanceof QrcRpcError) return err;
  if (err instanceof QrcBackendError) {
    switch (err.code) {
      case 'unknown-control':
        return new QrcRpcError(QRC_ERR.UNKNOWN_CONTROL, err.message);
      case 'unknown-component':
        return new QrcRpcError(QRC_ERR.UNKNOWN_COMPONENT, err.message);
      case 'read-only':
      case 'bad-value':
        return new QrcRpcError(QRC_ERR.INVALID_PARAMS, err.message);
    }
  }
  return new QrcRpcError(QRC_ERR.SERVER_ERROR, err instanceof Error ? err.message : String(err));
}

const brief = (s: QrcControlState): { Name: string; Value: QrcValue; String: string; Position: number } => ({
  Name: s.Name,
  Value: s.Value,
  String: s.String,
  Position: s.Position,
});

export function indexByName(list: QrcControlState[]): Map<string, QrcControlState> {
  const m = new Map<string, QrcControlState>();
  for (const s of list) m.set(s.Name, s);
  return m;
}

/** The controls of a component by name, or error 7. */
export function componentIndex(backend: QrcBackend, component: string): Map<string, QrcControlState> {
  const list = backend.componentControls(component);
  if (!list) throw new QrcRpcError(QRC_ERR.UNKNOWN_COMPONENT, component);
  return indexByName(list);
}

function lookup(index: Map<string, QrcControlState>, n: string, where?: string): QrcControlState {
  const s = index.get(n);
  if (!s) throw new QrcRpcError(QRC_ERR.UNKNOWN_CONTROL, where === undefined ? n : `${where}.${n}`);
  return s;
}

function writable(s: QrcControlState, where: string): void {
  if (s.Direction === 'Read Only') throw new QrcRpcError(QRC_ERR.INVALID_PARAMS, `${where} is read-only`);
}

/** Control.Get: params = array of names -> [{Name, Value, String, Position}]. */
export function controlGet(backend: QrcBackend, params: unknown): MethodResult {
  const names = P.nameList(params, 'params');
  const index = indexByName(backend.namedControls());
  return names.map((n) => brief(lookup(index, n)));
}

/** Control.Set: {Name, Value, Ramp?} -> true. */
export async function controlSet(backend: QrcBackend, params: unknown): Promise<MethodResult> {
  const p = P.obj(params);
  const n = P.name(p['Name'], 'Name');
  const v = P.value(p['Value'], 'Value');
  const r = P.ramp(p['Ramp'], 'Ramp');
  // One control: the backend refuses unknown / read-only / bad values without changing anything.
  await backend.setNamed(n, v, r);
  return true;
}

/** Component.GetComponents -> [{Name, Type, Properties}]. */
export function componentGetComponents(backend: QrcBackend): MethodResult {
  return backend.components();
}

/** Component.GetControls: {Name} -> {Name, Controls:[full control state]}. */
export function componentGetControls(backend: QrcBackend, params: unknown): MethodResult {
  const c = P.name(P.obj(params)['Name'], 'Name');
  return { Name: c, Controls: [...componentIndex(backend, c).values()] };
}

/** Component.Get: {Name, Controls:[{Name}]} -> {Name, Controls:[{Name, Value, String, Position}]}. */
export function componentGet(backend: QrcBackend, params: unknown): MethodResult {
  const p = P.obj(params);
  const c = P.name(p['Name'], 'Name');
  const names = P.nameObjectList(p['Controls'], 'Controls');
  const index = componentIndex(backend, c);
  return { Name: c, Controls: names.map((n) => brief(lookup(index, n, c))) };
}

/** Component.Set: {Name, Controls:[{Name, Value, Ramp?}]} -> true. All names checked first. */
export async function componentSet(backend: QrcBackend, params: unknown): Promise<MethodResult> {
  const p = P.obj(params);
  const c = P.name(p['Name'], 'Name');
  const items = P.setList(p['Controls'], 'Controls');
  const index = componentIndex(backend, c);
  for (const it of items) writable(lookup(index, it.name, c), `${c}.${it.name}`);
  for (const it of items) await backend.setComponent(c, it.name, it.value, it.ramp);
  return true;
}
