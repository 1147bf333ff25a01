/**
 * The app-slot launcher (contract B): consume the one-shot trial flag
 * (DirectoryBootSelector.boot()), run `<appRoot>/<slot>/dist/firmware/cli.js`
 * as a child with the same node binary, forward SIGTERM/SIGINT/SIGHUP, exit
 * with the child's status. A slot without a runtime (fresh install) runs the
 * launcher's own tree instead. A runtime exiting 75 asks to be started again
 * (into the new slot); systemd's Restart=on-failure or a drill supervisor does
 * that. Imports stay light: this runs before every start.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import { mkdir, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createJsonLogger, type Logger } from '../log/logger.js';
import { parseListenFds, socketActivationSpawn } from '../systemd/listen-fds.js';
import { DirectoryBootSelector, initDirectorySlots, type SlotName } from './boot-selector.js';
import { UpdateError } from './errors.js';

/** Exit status by which a runtime asks to be started again (into the newly armed slot). */
export const EXIT_RESTART = 75;

const CLI_REL = join('dist', 'firmware', 'cli.js');

export interface LaunchArgs {
  appRoot: string;
  cliArgs: string[];
}

/** `--app-root DIR [--] <cli args>`; `--app-root=DIR` works too. Throws UPDATE_ERR_USAGE. */
export function parseLaunchArgs(argv: string[]): LaunchArgs {
  let appRoot: string | null = null;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '--app-root') {
      const v = argv[i + 1];
      if (!v || v.startsWith('--')) throw new UpdateError('UPDATE_ERR_USAGE', '--app-root needs a directory');
      appRoot = v;
      i++;
    } else if (a.startsWith('--app-root=')) {
      appRoot = a.slice('--app-root='.length);
      if (!appRoot) throw new UpdateError('UPDATE_ERR_USAGE', '--app-root needs a directory');
    } else break;
  }
  if (!appRoot) throw new UpdateError('UPDATE_ERR_USAGE', 'usage: launch --app-root DIR -- <cli args>');
  return { appRoot: resolve(appRoot), cliArgs: argv.slice(i) };
}

/** The tree the launcher itself runs from: the first directory above it holding package.json. */
export function launcherTree(startUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(startUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new UpdateError('UPDATE_ERR_SLOT', 'no package.json above the launcher');
    dir = up;
  }
}

export function hasRuntime(tree: string): boolean {
  return existsSync(join(tree, CLI_REL));
}

export interface LaunchPlan {
  /** The slot the boot selector picked (recorded in <appRoot>/booted). */
  slot: SlotName;
  /** The runtime tree that runs: the slot, or the launcher's own tree on a fresh install. */
  tree: string;
  cli: string;
  fresh: boolean;
  /** The trial slot had no runtime and was marked bad. */
  badTrial: SlotName | null;
}

/**
 * Pick the runtime: consume the one-shot trial flag. A trial slot without a
 * runtime is marked bad and the primary boots instead (it must never pass for
 * the trial). A primary without a runtime runs the launcher's own tree.
 */
export async function planLaunch(appRoot: string, ownTree: string): Promise<LaunchPlan> {
  await initDirectorySlots(appRoot);
  const sel = new DirectoryBootSelector(appRoot);
  let slot = await sel.boot();
  let badTrial: SlotName | null = null;
  const primary = await sel.primary();
  if (slot !== primary && !hasRuntime(join(appRoot, slot))) {
    badTrial = slot;
    await sel.markBad(slot);
    slot = await sel.boot();
  }
  const slotTree = join(appRoot, slot);
  const fresh = !hasRuntime(slotTree);
  const tree = fresh ? ownTree : slotTree;
  return { slot, tree, cli: join(tree, CLI_REL), fresh, badTrial };
}

/**
 * A slot without node_modules resolves packages from `<appRoot>/node_modules`
 * (ESM resolution walks up from `<appRoot>/<slot>/dist/...`): make that a
 * symlink to the launcher tree's node_modules. Returns what it did.
 */
export async function linkModules(
  appRoot: string,
  slotTree: string,
  ownTree: string,
): Promise<'slot-has-own' | 'linked' | 'already' | 'no-source'> {
  if (existsSync(join(slotTree, 'node_modules'))) return 'slot-has-own';
  const source = join(ownTree, 'node_modules');
  if (!existsSync(source)) return 'no-source';
  const link = join(appRoot, 'node_modules');
  let st: ReturnType<typeof lstatSync> | null;
  try {
    st = lstatSync(link);
  } catch {
    st = null;
  }
  if (st?.isSymbolicLink() && resolve(appRoot, readlinkSync(link)) === source) return 'already';
  if (st && !st.isSymbolicLink()) return 'slot-has-own';
  await mkdir(appRoot, { recursive: true });
  const tmp = `${link}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await symlink(source, tmp);
  await rename(tmp, link);
  return 'linked';
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  ownTree?: string;
  nodePath?: string;
  /** Where SIGTERM/SIGINT/SIGHUP arrive (default: this process). */
  signals?: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/**
 * Run the launcher. Resolves with the exit status for the launcher process
 * (the child's code), or the signal that ended the child.
 */
export async function runLauncher(
  argv: string[],
  o: RunOptions = {},
): Promise<{ code: number } | { signal: NodeJS.Signals }> {
  const env = o.env ?? process.env;
  const log = (o.logger ?? createJsonLogger()).child({ module: 'launch' });
  const { appRoot, cliArgs } = parseLaunchArgs(argv);
  const ownTree = o.ownTree ?? launcherTree();
  const plan = await planLaunch(appRoot, ownTree);
  const modules = plan.fresh ? 'own-tree' : await linkModules(appRoot, plan.tree, ownTree);
  log.info('launch', {
    slot: plan.slot,
    tree: plan.tree,
    fresh: plan.fresh,
    modules,
    ...(plan.badTrial ? { badTrial: plan.badTrial } : {}),
  });
  const node = o.nodePath ?? process.execPath;
  const childEnv = { ...env, QPERIPH_APP_ROOT: appRoot, QPERIPH_BOOTED_SLOT: plan.slot };
  // Sockets systemd passed to the launcher (qperiph-manager*.socket) go on to the runtime, whose
  // pid systemd cannot know: socketActivationSpawn execs it through /bin/sh with LISTEN_PID set.
  const fds = parseListenFds(env, process.pid);
  const r =
    fds.length > 0
      ? socketActivationSpawn(node, [plan.cli, ...cliArgs], fds, childEnv)
      : { file: node, args: [plan.cli, ...cliArgs], env: childEnv, extraStdio: [] };
  const child = spawn(r.file, r.args, {
    env: r.env,
    stdio: ['inherit', 'inherit', 'inherit', ...r.extraStdio],
  });
  const forward = (sig: NodeJS.Signals) => () => {
    child.kill(sig);
  };
  const handlers = FORWARDED.map((s) => [s, forward(s)] as const);
  const signals = o.signals ?? process;
  for (const [s, h] of handlers) signals.on(s, h);
  try {
    return await new Promise((res, rej) => {
      child.once('error', rej);
      child.once('exit', (code, signal) => {
        if (signal) res({ signal });
        else res({ code: code ?? 1 });
      });
    });
  } finally {
    for (const [s, h] of handlers) signals.off(s, h);
  }
}

/** The process entry (dist/firmware/launch.js). */
export async function launchMain(argv: string[]): Promise<void> {
  try {
    const r = await runLauncher(argv);
    if ('signal' in r) {
      // End the same way the runtime did (systemd tells a clean SIGTERM stop from a crash).
      process.kill(process.pid, r.signal);
      return;
    }
    process.exitCode = r.code;
  } catch (err) {
    process.stderr.write(`qperiph-launch: ${(err as Error).message}\n`);
    process.exitCode = (err as { code?: string }).code === 'UPDATE_ERR_USAGE' ? 2 : 1;
  }
}
