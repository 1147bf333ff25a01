/**
 * One QRC connection's state, apart from any socket: logon, change groups and their AutoPoll
 * timers, the idle timeout, and the order of replies. The shell (TCP or WebSocket) feeds it
 * messages and frame errors and gives it `send` and `close`; time comes from a ClockSource, so
 * unit tests drive it in virtual time.
 *
 * Rules:
 *   - On `start()` the session sends an EngineStatus notification, and again on every status
 *     change the backend reports.
 *   - Messages are handled one at a time in arrival order; replies leave in the same order.
 *   - Anything received (even a bad frame) resets the idle timer; after `idleTimeoutMs` without
 *     input the session closes ('idle').
 *   - With `auth` set, every method but Logon and NoOp answers error 10 until a Logon succeeds.
 *   - While the Core is on Standby, every method but Logon, NoOp and StatusGet answers -32604.
 *   - Change groups live and die with the session; at most `maxChangeGroups` per session and,
 *     when a shared `groupBudget` is given, at most `groupBudget.max` across sessions (error 5).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ClockSource, TimerHandle } from '../../../firmware/clock/clock.js';
import type { Logger } from '../../../firmware/log/logger.js';
import type { QrcBackend, QrcControlState } from './backend.js';
import { QrcChangeGroup, type ControlRef, type QrcChange } from './change-group.js';
import { QRC_ERR, QrcRpcError } from './errors.js';
import * as M from './methods.js';
import * as P from './params.js';
import { parseQrcMessage, qrcError, qrcNotification, qrcResult, type QrcId } from './rpc.js';

export interface QrcCredentials {
  User: string;
  Password: string;
}

/** Logon policy: absent or `users: []` = open access. */
export interface QrcAuth {
  users: QrcCredentials[];
}

export type QrcCloseReason = 'idle' | 'oversize' | 'peer' | 'server-stop' | 'slow-consumer' | 'error';

/** Counters shared by every session of a server (the server owns the object). */
export interface QrcCounters {
  framesIn: number;
  framesOut: number;
  requests: number;
  notificationsOut: number;
  errors: number;
  parseErrors: number;
  connections: number;
  openConnections: number;
  refusedConnections: number;
  idleCloses: number;
  oversizeCloses: number;
}

export function newCounters(): QrcCounters {
  return {
    framesIn: 0,
    framesOut: 0,
    requests: 0,
    notificationsOut: 0,
    errors: 0,
    parseErrors: 0,
    connections: 0,
    openConnections: 0,
    refusedConnections: 0,
    idleCloses: 0,
    oversizeCloses: 0,
  };
}

/** Change groups across every connection of one server (the Core's limit). */
export interface QrcGroupBudget {
  used: number;
  readonly max: number;
}

export const QRC_DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** A Core holds at most 512 change groups at once (public change-group documentation). */
export const QRC_DEFAULT_MAX_TOTAL_CHANGE_GROUPS = 512;
export const QRC_DEFAULT_MAX_CHANGE_GROUPS = 64;
export const QRC_DEFAULT_MAX_GROUP_CONTROLS = 10_000;
export const QRC_MIN_AUTOPOLL_SECONDS = 0.1;
export const QRC_MAX_AUTOPOLL_SECONDS = 3600;

/**
 * How AutoPoll results travel: 'notification' (default): `{method:'ChangeGroup.Poll', params:
 * {Id, Changes}}` with no id; 'response': a result carrying the AutoPoll request's id, repeated.
 */
export type AutoPollStyle = 'notification' | 'response';

export interface QrcSessionOptions {
  backend: QrcBackend;
  clock: ClockSource;
  send: (message: Record<string, unknown>) => void;
  /** Called once when the session ends; the shell closes its socket. */
  close: (reason: QrcCloseReason) => void;
  logger: Logger;
  counters?: QrcCounters;
  /** 0 = never. Default 60 000. */
  idleTimeoutMs?: number;
  auth?: QrcAuth;
  maxChangeGroups?: number;
  /** Shared by the sessions of one server: change groups in use across all of them. */
  groupBudget?: QrcGroupBudget;
  maxGroupControls?: number;
  autoPollStyle?: AutoPollStyle;
  /** Called when the backlog of unhandled messages empties (the shell resumes reading). */
  onDrain?: () => void;
}

interface AutoPoll {
  periodMs: number;
  nextAt: number;
  timer: TimerHandle;
  requestId: QrcId;
}

type Handler = (params: unknown, id: QrcId | null) => unknown;

/** Methods allowed before Logon when credentials are required. */
const BEFORE_LOGON = new Set(['Logon', 'NoOp']);
/** Methods allowed while on Standby. */
const ON_STANDBY = new Set(['Logon', 'NoOp', 'StatusGet']);

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class QrcSession {
  private readonly o: QrcSessionOptions;
  readonly counters: QrcCounters;
  private readonly idleMs: number;
  private readonly maxGroups: number;
  private readonly maxGroupControls: number;
  private readonly groups = new Map<string, QrcChangeGroup>();
  private readonly autoPolls = new Map<string, AutoPoll>();
  private readonly queue: string[] = [];
  private readonly handlers: Record<string, Handler>;
  private busy = false;
  private started = false;
  private ended: QrcCloseReason | null = null;
  private lastRxMs: number;
  private idleTimer: TimerHandle | null = null;
  private unsubscribe: Array<() => void> = [];
  /** User name after a successful Logon ('' with open access and no Logon). */
  user: string | null;

  constructor(options: QrcSessionOptions) {
    this.o = options;
    this.counters = options.counters ?? newCounters();
    this.idleMs = options.idleTimeoutMs ?? QRC_DEFAULT_IDLE_TIMEOUT_MS;
    this.maxGroups = options.maxChangeGroups ?? QRC_DEFAULT_MAX_CHANGE_GROUPS;
    this.maxGroupControls = options.maxGroupControls ?? QRC_DEFAULT_MAX_GROUP_CONTROLS;
    this.user = this.authRequired ? null : '';
    this.lastRxMs = options.clock.monotonicMs();
    const b = options.backend;
    this.handlers = {
      Logon: (p) => this.logon(p),
      NoOp: () => true,
      StatusGet: () => b.status(),
      'Control.Get': (p) => M.controlGet(b, p),
      'Control.Set': (p) => M.controlSet(b, p),
      'Component.GetComponents': () => M.componentGetComponents(b),
      'Component.GetControls': (p) => M.componentGetControls(b, p),
      'Component.Get': (p) => M.componentGet(b, p),
      'Component.Set': (p) => M.componentSet(b, p),
      'ChangeGroup.AddControl': (p) => this.addControl(p),
      'ChangeGroup.AddComponentControl': (p) => this.addComponentControl(p),
      'ChangeGroup.Remove': (p) => this.removeControls(p),
      'ChangeGroup.Poll': (p) => this.poll(p),
      'ChangeGroup.Clear': (p) => (this.group(p).clear(), true),
      'ChangeGroup.Invalidate': (p) => (this.group(p).invalidate(), true),
      'ChangeGroup.Destroy': (p) => this.destroy(p),
      'ChangeGroup.AutoPoll': (p, id) => this.autoPoll(p, id),
    };
  }

  get authRequired(): boolean {
    return (this.o.auth?.users.length ?? 0) > 0;
  }

  get closed(): boolean {
    return this.ended !== null;
  }

  get closeReason(): QrcCloseReason | null {
    return this.ended;
  }

  /** Messages received and not yet answered. */
  get backlog(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  get changeGroupCount(): number {
    return this.groups.size;
  }

  /** Send the first EngineStatus, follow status changes, arm the idle timer. */
  start(): void {
    if (this.started || this.ended) return;
    this.started = true;
    this.unsubscribe.push(this.o.backend.onStatus((s) => this.notify('EngineStatus', s)));
    this.notify('EngineStatus', this.o.backend.status());
    this.armIdle();
  }

  /** One complete message's text (a TCP frame or a WebSocket message). */
  receive(text: string): void {
    if (this.ended) return;
    this.counters.framesIn++;
    this.touch();
    this.queue.push(text);
    this.pump();
  }

  /**
   * A frame that could not be read. Not fatal: answered with -32700 (id null), the connection
   * stays. Fatal (too large): answered with -32600, then the session closes ('oversize').
   */
  receiveBad(reason: string, fatal: boolean): void {
    if (this.ended) return;
    this.counters.framesIn++;
    this.touch();
    if (fatal) {
      this.counters.oversizeCloses++;
      this.replyError(null, QRC_ERR.INVALID_REQUEST, `Invalid request: ${reason}`);
      this.close('oversize');
      return;
    }
    this.counters.parseErrors++;
    this.replyError(null, QRC_ERR.PARSE, `Parse error: ${reason}`);
  }

  /** End the session (idempotent): timers stop, groups go, the shell's `close` runs once. */
  close(reason: QrcCloseReason): void {
    if (this.ended) return;
    this.ended = reason;
    if (this.idleTimer) this.o.clock.clearTimeout(this.idleTimer);
    this.idleTimer = null;
    for (const a of this.autoPolls.values()) this.o.clock.clearTimeout(a.timer);
    this.autoPolls.clear();
    if (this.o.groupBudget) this.o.groupBudget.used -= this.groups.size;
    this.groups.clear();
    this.queue.length = 0;
    for (const u of this.unsubscribe) u();
    this.unsubscribe = [];
    if (reason === 'idle') this.counters.idleCloses++;
    this.o.close(reason);
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch

  private pump(): void {
    while (!this.busy && !this.ended && this.queue.length > 0) {
      const text = this.queue.shift()!;
      const pending = this.handle(text);
      if (pending) {
        this.busy = true;
        void pending.then(() => {
          this.busy = false;
          this.pump();
        });
        return;
      }
    }
    if (!this.busy && this.queue.length === 0 && !this.ended) this.o.onDrain?.();
  }

  /** Handle one message; returns a promise only when the reply waits for the backend. */
  private handle(text: string): Promise<void> | null {
    const msg = parseQrcMessage(text);
    if (msg.kind === 'invalid') {
      if (msg.code === QRC_ERR.PARSE) this.counters.parseErrors++;
      this.replyError(msg.id, msg.code, msg.message);
      return null;
    }
    this.counters.requests++;
    const id = msg.kind === 'request' ? msg.id : null;
    let out: unknown;
    try {
      out = this.invoke(msg.method, msg.params, id);
    } catch (err) {
      this.fail(id, msg.method, err);
      return null;
    }
    if (out instanceof Promise) {
      return out.then(
        (r: unknown) => this.succeed(id, r),
        (err: unknown) => this.fail(id, msg.method, err),
      );
    }
    this.succeed(id, out);
    return null;
  }

  private invoke(method: string, params: unknown, id: QrcId | null): unknown {
    const h = Object.prototype.hasOwnProperty.call(this.handlers, method) ? this.handlers[method] : undefined;
    if (!h) throw new QrcRpcError(QRC_ERR.METHOD_NOT_FOUND, method);
    if (this.user === null && !BEFORE_LOGON.has(method)) throw new QrcRpcError(QRC_ERR.LOGON_REQUIRED);
    if (!ON_STANDBY.has(method) && this.o.backend.status().State === 'Standby') {
      throw new QrcRpcError(QRC_ERR.STANDBY);
    }
    return h(params, id);
  }

  private succeed(id: QrcId | null, result: unknown): void {
    if (id !== null) this.send(qrcResult(id, result));
  }

  private fail(id: QrcId | null, method: string, err: unknown): void {
    const e = M.toRpcError(err);
    if (e.rpcCode === QRC_ERR.SERVER_ERROR) this.o.logger.warn('qrc_method_failed', { method, err });
    if (id === null) {
      this.counters.errors++;
      return;
    }
    this.replyError(id, e.rpcCode, e.message);
  }

  private replyError(id: QrcId | null, code: number, message: string): void {
    this.counters.errors++;
    this.send(qrcError(id, code, message));
  }

  private notify(method: string, params: unknown): void {
    this.counters.notificationsOut++;
    this.send(qrcNotification(method, params));
  }

  private send(message: Record<string, unknown>): void {
    if (this.ended) return;
    this.counters.framesOut++;
    this.o.send(message);
  }

  // -------------------------------------------------------------------------------------------
  // Idle timeout

  private touch(): void {
    this.lastRxMs = this.o.clock.monotonicMs();
  }

  private armIdle(): void {
    if (this.idleMs <= 0 || this.ended) return;
    const due = this.lastRxMs + this.idleMs - this.o.clock.monotonicMs();
    this.idleTimer = this.o.clock.setTimeout(() => {
      this.idleTimer = null;
      if (this.o.clock.monotonicMs() - this.lastRxMs >= this.idleMs) this.close('idle');
      else this.armIdle();
    }, due);
  }

  // -------------------------------------------------------------------------------------------
  // Logon

  private logon(params: unknown): unknown {
    const p = P.obj(params);
    const user = typeof p['User'] === 'string' ? p['User'] : '';
    const password = typeof p['Password'] === 'string' ? p['Password'] : '';
    if (!this.authRequired) {
      this.user = user;
      return true;
    }
    const u = digest(user);
    const pw = digest(password);
    let ok = false;
    for (const c of this.o.auth!.users) {
      // Compare every entry in constant time per entry, no early exit.
      const match = timingSafeEqual(u, digest(c.User)) && timingSafeEqual(pw, digest(c.Password));
      ok = ok || match;
    }
    if (!ok) {
      this.o.logger.warn('qrc_logon_failed', { user });
      throw new QrcRpcError(QRC_ERR.LOGON_REQUIRED, 'bad user name or password');
    }
    this.user = user;
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Change groups

  private groupKey(id: QrcId): string {
    return typeof id === 'number' ? `#${id}` : `$${id}`;
  }

  /** The group named by params.Id, or error 6. */
  private group(params: unknown): QrcChangeGroup {
    const id = P.groupId(P.obj(params)['Id']);
    const g = this.groups.get(this.groupKey(id));
    if (!g) throw new QrcRpcError(QRC_ERR.UNKNOWN_CHANGE_GROUP, String(id));
    return g;
  }

  /** The group named by `id`, created when missing (error 5 past the limit). */
  private groupOrNew(id: QrcId): QrcChangeGroup {
    const key = this.groupKey(id);
    let g = this.groups.get(key);
    if (g) return g;
    if (this.groups.size >= this.maxGroups) {
      throw new QrcRpcError(QRC_ERR.CHANGE_GROUPS_EXHAUSTED, `at most ${this.maxGroups} per connection`);
    }
    const budget = this.o.groupBudget;
    if (budget && budget.used >= budget.max) {
      throw new QrcRpcError(QRC_ERR.CHANGE_GROUPS_EXHAUSTED, `at most ${budget.max} on this Core`);
    }
    g = new QrcChangeGroup(id);
    this.groups.set(key, g);
    if (budget) budget.used++;
    return g;
  }

  private addRefs(id: QrcId, refs: ControlRef[]): true {
    // Check the limit before creating anything.
    const existing = this.groups.get(this.groupKey(id));
    const fresh = existing ? refs.filter((r) => !existing.has(r)) : refs;
    const newCount = new Set(fresh.map((r) => `${r.component ?? ''}\0${r.name}`)).size;
    if ((existing?.size ?? 0) + newCount > this.maxGroupControls) {
      throw new QrcRpcError(
        QRC_ERR.INVALID_PARAMS,
        `a change group holds at most ${this.maxGroupControls} controls`,
      );
    }
    this.groupOrNew(id).add(refs);
    return true;
  }

  private addControl(params: unknown): unknown {
    const p = P.obj(params);
    const id = P.groupId(p['Id']);
    const names = P.nameList(p['Controls'], 'Controls');
    const index = M.indexByName(this.o.backend.namedControls());
    for (const n of names) if (!index.has(n)) throw new QrcRpcError(QRC_ERR.UNKNOWN_CONTROL, n);
    return this.addRefs(
      id,
      names.map((name) => ({ name })),
    );
  }

  private componentRefs(params: Record<string, unknown>): ControlRef[] {
    const c = P.obj(params['Component'], 'Component');
    const component = P.name(c['Name'], 'Component.Name');
    const names = P.nameObjectList(c['Controls'], 'Component.Controls');
    const index = M.componentIndex(this.o.backend, component);
    for (const n of names)
      if (!index.has(n)) throw new QrcRpcError(QRC_ERR.UNKNOWN_CONTROL, `${component}.${n}`);
    return names.map((name) => ({ component, name }));
  }

  private addComponentControl(params: unknown): unknown {
    const p = P.obj(params);
    const id = P.groupId(p['Id']);
    return this.addRefs(id, this.componentRefs(p));
  }

  /** {Id, Controls:[names]} removes named controls; {Id, Component:{Name, Controls}} component ones. */
  private removeControls(params: unknown): unknown {
    const p = P.obj(params);
    const g = this.group(p);
    const refs: ControlRef[] = [];
    if (p['Controls'] !== undefined)
      for (const name of P.nameList(p['Controls'], 'Controls')) refs.push({ name });
    if (p['Component'] !== undefined) {
      const c = P.obj(p['Component'], 'Component');
      const component = P.name(c['Name'], 'Component.Name');
      for (const name of P.nameObjectList(c['Controls'], 'Component.Controls'))
        refs.push({ component, name });
    }
    if (p['Controls'] === undefined && p['Component'] === undefined) {
      throw new QrcRpcError(QRC_ERR.INVALID_PARAMS, 'Controls (or Component) is required');
    }
    g.remove(refs);
    return true;
  }

  private pollGroup(g: QrcChangeGroup): { Id: QrcId; Changes: QrcChange[] } {
    const b = this.o.backend;
    let named: Map<string, QrcControlState> | null = null;
    const comps = new Map<string, Map<string, QrcControlState> | null>();
    const changes = g.poll((ref) => {
      if (ref.component === undefined) {
        named ??= M.indexByName(b.namedControls());
        return named.get(ref.name);
      }
      let idx = comps.get(ref.component);
      if (idx === undefined) {
        const list = b.componentControls(ref.component);
        idx = list ? M.indexByName(list) : null;
        comps.set(ref.component, idx);
      }
      return idx?.get(ref.name);
    });
    return { Id: g.id, Changes: changes };
  }

  private poll(params: unknown): unknown {
    return this.pollGroup(this.group(params));
  }

  private destroy(params: unknown): unknown {
    const g = this.group(params);
    const key = this.groupKey(g.id);
    this.stopAutoPoll(key);
    this.groups.delete(key);
    if (this.o.groupBudget) this.o.groupBudget.used--;
    return true;
  }

  private stopAutoPoll(key: string): void {
    const a = this.autoPolls.get(key);
    if (a) this.o.clock.clearTimeout(a.timer);
    this.autoPolls.delete(key);
  }

  /** {Id, Rate (s)}: from now on, every Rate seconds, push the group's changes (when any). */
  private autoPoll(params: unknown, requestId: QrcId | null): unknown {
    const p = P.obj(params);
    const g = this.group(p);
    const rate = p['Rate'];
    if (
      typeof rate !== 'number' ||
      !Number.isFinite(rate) ||
      rate < QRC_MIN_AUTOPOLL_SECONDS ||
      rate > QRC_MAX_AUTOPOLL_SECONDS
    ) {
      throw new QrcRpcError(
        QRC_ERR.INVALID_PARAMS,
        `Rate must be a number of seconds ${QRC_MIN_AUTOPOLL_SECONDS}..${QRC_MAX_AUTOPOLL_SECONDS}`,
      );
    }
    const key = this.groupKey(g.id);
    this.stopAutoPoll(key);
    const periodMs = rate * 1000;
    const a: AutoPoll = {
      periodMs,
      nextAt: this.o.clock.monotonicMs() + periodMs,
      timer: { id: -1 },
      requestId: requestId ?? 0,
    };
    this.autoPolls.set(key, a);
    this.scheduleAutoPoll(key, a);
    return true;
  }

  private scheduleAutoPoll(key: string, a: AutoPoll): void {
    a.timer = this.o.clock.setTimeout(() => {
      if (this.ended || this.autoPolls.get(key) !== a) return;
      const g = this.groups.get(key);
      if (!g) return;
      const res = this.pollGroup(g);
      if (res.Changes.length > 0) {
        if (this.o.autoPollStyle === 'response') this.send(qrcResult(a.requestId, res));
        else this.notify('ChangeGroup.Poll', res);
      }
      // Next tick on the ideal grid (no drift); skip ticks missed while the process was busy.
      const now = this.o.clock.monotonicMs();
      a.nextAt += a.periodMs;
      if (a.nextAt <= now) a.nextAt = now + a.periodMs;
      this.scheduleAutoPoll(key, a);
    }, a.nextAt - this.o.clock.monotonicMs());
  }
}
