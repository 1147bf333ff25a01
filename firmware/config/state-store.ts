/**
 * Persistent device state (name, design, trusted Cores, settings) in one
 * state directory. On disk, `state.json` is an envelope whose sha256 covers
 * the canonical JSON of the data, so a truncated or damaged file is detected;
 * `state.prev.json` is the last good copy: a mirror written right after each
 * save of `state.json`, so a damaged `state.json` costs no data. Every write is atomic and
 * fsync'd. A damaged file is moved aside (never deleted) and the previous copy,
 * or else the defaults, is used: opening never fails on bad content, only on
 * I/O errors (STATE_ERR_IO).
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createSystemClock, type ClockSource } from '../clock/clock.js';
import { QperiphError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { deepFreeze } from './board-config.js';
import { fsyncDirectory, readFileIfExists, writeFileAtomic } from './atomic-file.js';

/** A Core's certificate, named by its SHA-256 fingerprint in node:crypto's form ('AB:CD:…', 32 bytes). */
export interface CoreCertRef {
  name: string;
  fingerprint256: string;
  /** ISO 8601 time the entry was added. */
  addedAt: string;
}

/** The design the Core last pushed to this peripheral. */
export interface DesignInfo {
  name: string;
  code: string;
  role: string;
  primary: boolean;
  redundant: boolean;
}

export interface DeviceSettings {
  /** Multicast TTL of QDP announcements (1..255). */
  qdpTtl: number;
  /** Port 80 only redirects to HTTPS. */
  httpRedirectOnly: boolean;
  /** The manager's status page is readable without logging in. */
  publicStatus: boolean;
}

export interface DeviceState {
  version: 1;
  /** Device name (a hostname label); null until one is assigned. */
  name: string | null;
  design: DesignInfo | null;
  trustedCores: CoreCertRef[];
  pendingCores: CoreCertRef[];
  declinedCores: CoreCertRef[];
  settings: DeviceSettings;
}

/** One problem in a state value, located by a JSON Pointer. */
export interface StateIssue {
  path: string;
  message: string;
}

export class StateStoreError extends QperiphError {
  readonly issues: readonly StateIssue[];
  constructor(
    code: 'STATE_ERR_IO' | 'STATE_ERR_INVALID',
    message: string,
    options?: { cause?: unknown; issues?: StateIssue[] },
  ) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.issues = Object.freeze([...(options?.issues ?? [])]);
  }
}

interface SettingSpec<T> {
  default: T;
  /** null when the value is acceptable, else what is wrong with it. */
  check(value: unknown): string | null;
}

const isBool = (v: unknown): string | null => (typeof v === 'boolean' ? null : 'must be boolean');

/** Every setting, declared once with its default and its check. */
const SETTINGS: { [K in keyof DeviceSettings]: SettingSpec<DeviceSettings[K]> } = {
  qdpTtl: {
    default: 1,
    check: (v) =>
      Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 255 ? null : 'must be an integer 1..255',
  },
  httpRedirectOnly: { default: false, check: isBool },
  publicStatus: { default: false, check: isBool },
};

export function defaultDeviceState(): DeviceState {
  const settings = Object.fromEntries(Object.entries(SETTINGS).map(([k, spec]) => [k, spec.default]));
  return {
    version: 1,
    name: null,
    design: null,
    trustedCores: [],
    pendingCores: [],
    declinedCores: [],
    settings: settings as unknown as DeviceSettings,
  };
}

/** JSON with object keys sorted at every level and no whitespace: the input of the checksum. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const FINGERPRINT_RE = /^[0-9A-F]{2}(?::[0-9A-F]{2}){31}$/;
const ISO_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;
const LIST_KEYS = ['trustedCores', 'pendingCores', 'declinedCores'] as const;

/**
 * Check a state value field by field and return a normalised copy: settings keys that are
 * missing get their defaults, keys this version does not know are kept as they are (a newer
 * firmware may have written them). `state` is null when there are issues.
 */
export function validateDeviceState(value: unknown): { state: DeviceState | null; issues: StateIssue[] } {
  const issues: StateIssue[] = [];
  const bad = (path: string, message: string): void => {
    issues.push({ path, message });
  };
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { then?: unknown }).then === 'function'
  ) {
    return { state: null, issues: [{ path: '', message: 'must be a state object, not a promise' }] };
  }
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(value)) as unknown;
  } catch {
    return { state: null, issues: [{ path: '', message: 'must be plain JSON data' }] };
  }
  if (!isObject(copy)) return { state: null, issues: [{ path: '', message: 'must be object' }] };

  if (copy['version'] !== 1) bad('/version', 'must be 1');
  const name = copy['name'];
  if (name !== null && (typeof name !== 'string' || !NAME_RE.test(name))) {
    bad('/name', 'must be null or a hostname label (letters, digits, inner hyphens, at most 63)');
  }

  const design = copy['design'];
  if (design !== null) {
    if (!isObject(design)) {
      bad('/design', 'must be object or null');
    } else {
      for (const k of ['name', 'code', 'role'] as const) {
        if (typeof design[k] !== 'string') bad(`/design/${k}`, 'must be string');
      }
      for (const k of ['primary', 'redundant'] as const) {
        if (typeof design[k] !== 'boolean') bad(`/design/${k}`, 'must be boolean');
      }
    }
  }

  const fingerprints = new Map<string, string>();
  for (const key of LIST_KEYS) {
    const list = copy[key];
    if (!Array.isArray(list)) {
      bad(`/${key}`, 'must be array');
      continue;
    }
    list.forEach((ref: unknown, i) => {
      const at = `/${key}/${i}`;
      if (!isObject(ref)) {
        bad(at, 'must be object');
        return;
      }
      if (typeof ref['name'] !== 'string') bad(`${at}/name`, 'must be string');
      const fp = ref['fingerprint256'];
      if (typeof fp !== 'string' || !FINGERPRINT_RE.test(fp)) {
        bad(`${at}/fingerprint256`, "must be an upper-case SHA-256 fingerprint 'AB:CD:…' (32 bytes)");
      } else if (fingerprints.has(fp)) {
        bad(`${at}/fingerprint256`, `is already listed at ${fingerprints.get(fp)!}`);
      } else {
        fingerprints.set(fp, at);
      }
      const addedAt = ref['addedAt'];
      if (typeof addedAt !== 'string' || !ISO_TIME_RE.test(addedAt) || Number.isNaN(Date.parse(addedAt))) {
        bad(`${at}/addedAt`, 'must be an ISO 8601 date-time');
      }
    });
  }

  let settings = copy['settings'];
  if (settings === undefined) settings = copy['settings'] = {};
  if (!isObject(settings)) {
    bad('/settings', 'must be object');
  } else {
    for (const [key, spec] of Object.entries(SETTINGS) as Array<[string, SettingSpec<unknown>]>) {
      if (settings[key] === undefined) {
        settings[key] = spec.default;
      } else {
        const problem = spec.check(settings[key]);
        if (problem) bad(`/settings/${key}`, problem);
      }
    }
  }
  return issues.length > 0 ? { state: null, issues } : { state: copy as unknown as DeviceState, issues };
}

const ENVELOPE_FORMAT = 'qperiph-state';
const ENVELOPE_VERSION = 1;

function encodeEnvelope(state: DeviceState, savedAt: string): string {
  const envelope = {
    format: ENVELOPE_FORMAT,
    version: ENVELOPE_VERSION,
    sha256: sha256Hex(canonicalJson(state)),
    savedAt,
    data: state,
  };
  return JSON.stringify(envelope, null, 2) + '\n';
}

type Decoded = { ok: true; state: DeviceState; text: string } | { ok: false; reason: string };

/** Check a state file's bytes: envelope, checksum, then the data field by field. */
function decodeStateFile(bytes: Uint8Array): Decoded {
  if (bytes.length === 0) return { ok: false, reason: 'empty file' };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, reason: 'not valid UTF-8' };
  }
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const at = /at position (\d+)/.exec(message);
    const atEnd = /end of JSON/.test(message) || (at !== null && Number(at[1]) >= text.trimEnd().length);
    return { ok: false, reason: `${atEnd ? 'truncated JSON' : 'invalid JSON'} (${message})` };
  }
  if (!isObject(envelope) || envelope['format'] !== ENVELOPE_FORMAT) {
    return { ok: false, reason: `not a ${ENVELOPE_FORMAT} envelope` };
  }
  if (envelope['version'] !== ENVELOPE_VERSION) {
    return { ok: false, reason: `unsupported envelope version ${JSON.stringify(envelope['version'])}` };
  }
  const sha = envelope['sha256'];
  if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha))
    return { ok: false, reason: 'missing or malformed sha256' };
  if (!('data' in envelope)) return { ok: false, reason: 'missing data' };
  if (sha256Hex(canonicalJson(envelope['data'])) !== sha) return { ok: false, reason: 'checksum mismatch' };
  const { state, issues } = validateDeviceState(envelope['data']);
  if (!state) {
    return { ok: false, reason: `invalid data: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` };
  }
  return { ok: true, state, text };
}

export interface StateStoreOptions {
  /** The state directory; created (mode 0700) when missing. */
  dir: string;
  logger: Logger;
  /** Wall time for `savedAt` and for names of moved-aside files. Default: the system clock. */
  clock?: ClockSource;
}

const FILE_MODE = 0o600;

export class StateStore {
  readonly dir: string;
  /** Path of state.json. */
  readonly file: string;
  /** Path of state.prev.json, the last good copy (a mirror of state.json). */
  readonly previousFile: string;
  private readonly logger: Logger;
  private readonly clock: ClockSource;
  private current: Readonly<DeviceState>;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(options: Required<StateStoreOptions>, state: DeviceState) {
    this.dir = options.dir;
    this.file = join(options.dir, 'state.json');
    this.previousFile = join(options.dir, 'state.prev.json');
    this.logger = options.logger;
    this.clock = options.clock;
    this.current = deepFreeze(state);
  }

  /** Open (or create) the state in `dir`. Recovers from damaged files; throws only STATE_ERR_IO. */
  static async open(options: StateStoreOptions): Promise<StateStore> {
    const { dir } = options;
    const clock = options.clock ?? createSystemClock();
    const logger = options.logger.child({ module: 'state' });
    const file = join(dir, 'state.json');
    const previousFile = join(dir, 'state.prev.json');
    await io(`create state directory ${dir}`, () => mkdir(dir, { recursive: true, mode: 0o700 }));

    const writeBoth = async (text: string): Promise<void> => {
      await io(`write ${file}`, () => writeFileAtomic(file, text, { mode: FILE_MODE }));
      await io(`write ${previousFile}`, () => writeFileAtomic(previousFile, text, { mode: FILE_MODE }));
    };

    const main = await readCandidate(file);
    const prev = await readCandidate(previousFile);
    if (main.kind === 'good') {
      logger.debug('state_loaded', { file });
      if (prev.kind !== 'good' || prev.text !== main.text) {
        // The mirror is missing, damaged or one save behind (a cut between the two writes).
        const fields: Record<string, unknown> = {
          file: previousFile,
          reason:
            prev.kind === 'corrupt'
              ? prev.reason
              : prev.kind === 'missing'
                ? 'file missing'
                : 'behind state.json',
        };
        if (prev.kind === 'corrupt') fields['movedTo'] = await moveAside(previousFile, clock);
        await io(`write ${previousFile}`, () =>
          writeFileAtomic(previousFile, main.text, { mode: FILE_MODE }),
        );
        if (prev.kind === 'corrupt') logger.warn('state_mirror_repaired', fields);
        else logger.debug('state_mirror_repaired', fields);
      }
      return new StateStore({ dir, logger, clock }, main.state);
    }

    if (main.kind === 'missing' && prev.kind === 'missing') {
      const state = defaultDeviceState();
      await writeBoth(encodeEnvelope(state, new Date(clock.wallMs()).toISOString()));
      logger.info('state_initialised', { dir, file });
      return new StateStore({ dir, logger, clock }, state);
    }

    const fields: Record<string, unknown> = {
      file,
      reason: main.kind === 'corrupt' ? main.reason : 'file missing',
    };
    if (main.kind === 'corrupt') fields['movedTo'] = await moveAside(file, clock);
    let state: DeviceState;
    let text: string;
    if (prev.kind === 'good') {
      state = prev.state;
      text = prev.text;
      fields['usedCopy'] = 'previous';
    } else {
      if (prev.kind === 'corrupt') {
        fields['previousReason'] = prev.reason;
        fields['previousMovedTo'] = await moveAside(previousFile, clock);
      }
      state = defaultDeviceState();
      text = encodeEnvelope(state, new Date(clock.wallMs()).toISOString());
      fields['usedCopy'] = 'defaults';
    }
    await writeBoth(text);
    logger.warn('state_recovered', fields);
    return new StateStore({ dir, logger, clock }, state);
  }

  /** The current state (deep-frozen). */
  get(): Readonly<DeviceState> {
    return this.current;
  }

  /**
   * Change the state: `mutator` edits a mutable copy (or returns a replacement). The result is
   * validated (STATE_ERR_INVALID, nothing written) and saved atomically, then mirrored to
   * state.prev.json (the last good copy). Updates run one at a time, in call order; each sees
   * the result of the one before. A failed update does not stop the ones queued after it.
   */
  update(mutator: (draft: DeviceState) => void | DeviceState): Promise<Readonly<DeviceState>> {
    const run = async (): Promise<Readonly<DeviceState>> => {
      const draft = structuredClone(this.current) as DeviceState;
      const returned = mutator(draft);
      const { state, issues } = validateDeviceState(returned === undefined ? draft : returned);
      if (!state) {
        const list = issues.map((i) => `${i.path}: ${i.message}`).join('; ');
        throw new StateStoreError('STATE_ERR_INVALID', `Invalid device state update: ${list}`, { issues });
      }
      if (canonicalJson(state) === canonicalJson(this.current)) return this.current;
      const text = encodeEnvelope(state, new Date(this.clock.wallMs()).toISOString());
      // state.json first, then its mirror: a cut between the two leaves state.json new and the
      // mirror one step behind, both whole; the loader prefers state.json.
      await io(`write ${this.file}`, () => writeFileAtomic(this.file, text, { mode: FILE_MODE }));
      await io(`write ${this.previousFile}`, () =>
        writeFileAtomic(this.previousFile, text, { mode: FILE_MODE }),
      );
      this.current = deepFreeze(state);
      this.logger.debug('state_saved', { file: this.file });
      return this.current;
    };
    const result = this.queue.then(run);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StateStoreError('STATE_ERR_IO', `Cannot ${what}: ${String(code)}`, { cause: err });
  }
}

type Candidate =
  | { kind: 'missing' }
  | { kind: 'corrupt'; reason: string }
  | { kind: 'good'; state: DeviceState; text: string };

async function readCandidate(file: string): Promise<Candidate> {
  const bytes = await io(`read ${file}`, () => readFileIfExists(file));
  if (bytes === null) return { kind: 'missing' };
  const decoded = decodeStateFile(bytes);
  return decoded.ok
    ? { kind: 'good', state: decoded.state, text: decoded.text }
    : { kind: 'corrupt', reason: decoded.reason };
}

/** Rename a damaged file to `<file>.corrupt-<time>[-n]`, never over an existing file. */
async function moveAside(file: string, clock: ClockSource): Promise<string> {
  const stamp = new Date(clock.wallMs()).toISOString().replace(/[:.]/g, '-');
  for (let n = 0; ; n++) {
    const target = `${file}.corrupt-${stamp}${n === 0 ? '' : `-${n}`}`;
    const taken = await lstat(target).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw new StateStoreError('STATE_ERR_IO', `Cannot check ${target}: ${String(err.code)}`, {
          cause: err,
        });
      },
    );
    if (taken) continue;
    await io(`move ${file} aside`, async () => {
      await rename(file, target);
      await fsyncDirectory(dirname(file));
    });
    return target;
  }
}
