/**
 * systemd socket activation (sd_listen_fds(3)), pure: which listening sockets the service
 * manager passed us. systemd sets LISTEN_PID (the process the sockets are for), LISTEN_FDS (how
 * many; they start at fd 3) and LISTEN_FDNAMES (colon-separated FileDescriptorName= values).
 * Variables meant for another process (LISTEN_PID differs) or absent mean "none" ([]); values
 * that are present but malformed are a typed error (SYSTEMD_ERR_LISTEN_FDS), never a guess.
 *
 * A process that runs the runtime as its child (the app-slot launcher) cannot pass the sockets
 * on by environment alone, because the child's pid is unknown before it starts:
 * `socketActivationSpawn` returns spawn arguments that run the child through `/bin/sh`, which
 * sets LISTEN_PID to its own pid and then execs the child in place (same pid).
 */
import { QperiphError } from '../errors.js';

/** The first passed descriptor (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;
/** Variables to remove once parsed, so children do not see them. */
export const LISTEN_ENV_KEYS = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;
const MAX_FDS = 64;

export interface ListenFd {
  fd: number;
  /** FileDescriptorName= of the socket, 'unknown' when systemd gave none. */
  name: string;
}

export class ListenFdsError extends QperiphError {
  declare readonly code: 'SYSTEMD_ERR_LISTEN_FDS';
  constructor(message: string) {
    super('SYSTEMD_ERR_LISTEN_FDS', message);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const DECIMAL = /^[0-9]{1,10}$/;

/** The sockets passed to process `pid`; [] when none are meant for it. */
export function parseListenFds(env: Env, pid: number): ListenFd[] {
  const pidText = env['LISTEN_PID'];
  const countText = env['LISTEN_FDS'];
  if (pidText === undefined || countText === undefined) return [];
  if (!DECIMAL.test(pidText)) throw new ListenFdsError(`LISTEN_PID is not a process id: '${pidText}'`);
  if (Number(pidText) !== pid) return [];
  if (!DECIMAL.test(countText)) throw new ListenFdsError(`LISTEN_FDS is not a count: '${countText}'`);
  const count = Number(countText);
  if (count > MAX_FDS) throw new ListenFdsError(`LISTEN_FDS=${count}: more than ${MAX_FDS} sockets`);
  const namesText = env['LISTEN_FDNAMES'];
  const names = namesText === undefined ? Array<string>(count).fill('unknown') : namesText.split(':');
  if (count === 0) return [];
  if (names.length !== count) {
    throw new ListenFdsError(`LISTEN_FDNAMES has ${names.length} names for LISTEN_FDS=${count}`);
  }
  return names.map((name, i) => ({ fd: LISTEN_FDS_START + i, name: name === '' ? 'unknown' : name }));
}

/**
 * The Peripheral Manager's sockets by name: 'http' and 'https'. Other names are returned in
 * `unused` (for a warning); a name given twice is an error.
 */
export function managerListenFds(fds: readonly ListenFd[]): {
  http?: number;
  https?: number;
  unused: ListenFd[];
} {
  const out: { http?: number; https?: number; unused: ListenFd[] } = { unused: [] };
  for (const f of fds) {
    if (f.name === 'http' || f.name === 'https') {
      if (out[f.name] !== undefined) throw new ListenFdsError(`two sockets are named '${f.name}'`);
      out[f.name] = f.fd;
    } else out.unused.push(f);
  }
  return out;
}

/** `env` without the LISTEN_* variables (what a child must get unless sockets are forwarded). */
export function withoutListenEnv(env: Env): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const k of LISTEN_ENV_KEYS) delete out[k];
  return out;
}

/**
 * Spawn arguments that hand `fds` (open in the calling process) to a child as its sockets
 * 3, 4, ... with LISTEN_PID set to the child's own pid. Use with child_process.spawn:
 * `spawn(r.file, r.args, { env: r.env, stdio: ['inherit', 'inherit', 'inherit', ...r.extraStdio] })`
 * (the first three stdio entries are the caller's choice).
 */
export function socketActivationSpawn(
  command: string,
  args: readonly string[],
  fds: readonly ListenFd[],
  env: Env,
): { file: string; args: string[]; env: Record<string, string | undefined>; extraStdio: number[] } {
  if (fds.some((f) => !Number.isInteger(f.fd) || f.fd < 0) || fds.some((f) => f.name.includes(':'))) {
    throw new ListenFdsError('descriptors must be integers >= 0 and names must not contain ":"');
  }
  return {
    file: '/bin/sh',
    // $0 is the command, "$@" its arguments; exec keeps the pid the variable names.
    args: ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', command, ...args],
    env: {
      ...withoutListenEnv(env),
      LISTEN_FDS: String(fds.length),
      LISTEN_FDNAMES: fds.map((f) => f.name).join(':'),
    },
    extraStdio: fds.map((f) => f.fd),
  };
}
