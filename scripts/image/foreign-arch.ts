/**
 * Foreign-CPU execution for `qperiph image base`: mmdebstrap runs the card's
 * maintainer scripts through qemu-user, which the kernel starts through
 * binfmt_misc. The build sets that up where the machine allows (root, the
 * binfmt_misc file system mountable, qemu-user-static installed) and says
 * exactly what is missing where it does not. The decision is pure
 * (`planForeignArch`); `ensureForeignArch` is the thin shell around it.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { DebianArch } from './layout.js';
import { missingTools } from './build.js';
import { ImageError } from './errors.js';

const exec = promisify(execFile);

/** The binfmt_misc entry (and qemu-user binary suffix) per Debian architecture. */
export const QEMU_BINFMT: Readonly<Record<DebianArch, string>> = {
  arm64: 'qemu-aarch64',
  armhf: 'qemu-arm',
};

export interface ForeignArchFacts {
  /** `dpkg --print-architecture` of the build machine. */
  hostArch: string;
  /** The card's Debian architecture. */
  arch: DebianArch;
  /** `arch-test <arch>` succeeded (binaries of arch run here). */
  runs: boolean;
  /** /proc/sys/fs/binfmt_misc is mounted (its `status` file exists). */
  binfmtMounted: boolean;
  /** The entry's state: missing file, or the first line of /proc/sys/fs/binfmt_misc/<entry>. */
  entry: 'absent' | 'enabled' | 'disabled';
  /** Effective uid 0. */
  root: boolean;
  /** Tools found on PATH. */
  tools: { mmdebstrap: boolean; archTest: boolean; updateBinfmts: boolean; qemuUser: boolean };
}

export type ForeignArchStep =
  { kind: 'mount-binfmt' } | { kind: 'enable'; entry: string } | { kind: 'import'; entry: string };

export type ForeignArchPlan =
  | { kind: 'ready'; steps: [] }
  | { kind: 'setup'; steps: ForeignArchStep[] }
  | { kind: 'impossible'; reason: string };

/** What to do so that `arch` binaries run here. Pure. */
export function planForeignArch(f: ForeignArchFacts): ForeignArchPlan {
  const missing = [!f.tools.mmdebstrap && 'mmdebstrap', !f.tools.archTest && 'arch-test'].filter(
    (x): x is string => typeof x === 'string',
  );
  if (missing.length)
    return {
      kind: 'impossible',
      reason: `missing ${missing.join(', ')} (apt-get install ${missing.join(' ')})`,
    };
  if (f.runs) return { kind: 'ready', steps: [] };
  const entry = QEMU_BINFMT[f.arch];
  const apt = 'apt-get install qemu-user-static binfmt-support';
  if (!f.tools.qemuUser || !f.tools.updateBinfmts)
    return { kind: 'impossible', reason: `${f.arch} binaries do not run on ${f.hostArch}: ${apt}` };
  if (!f.root)
    return {
      kind: 'impossible',
      reason: `${f.arch} binaries do not run on ${f.hostArch} and setting up binfmt_misc needs root (or build the base elsewhere and pass --base)`,
    };
  const steps: ForeignArchStep[] = [];
  if (!f.binfmtMounted) steps.push({ kind: 'mount-binfmt' });
  // An entry that binfmt_misc does not list yet is imported from binfmt-support's format file.
  steps.push(f.binfmtMounted && f.entry !== 'absent' ? { kind: 'enable', entry } : { kind: 'import', entry });
  return { kind: 'setup', steps };
}

async function archRuns(arch: DebianArch): Promise<boolean> {
  try {
    await exec('arch-test', [arch]);
    return true;
  } catch {
    return false;
  }
}

const BINFMT = '/proc/sys/fs/binfmt_misc';

async function facts(arch: DebianArch): Promise<ForeignArchFacts> {
  const entryName = QEMU_BINFMT[arch];
  const mounted = existsSync(`${BINFMT}/status`);
  let entry: ForeignArchFacts['entry'] = 'absent';
  if (mounted && existsSync(`${BINFMT}/${entryName}`))
    entry = /^enabled/.test(readFileSync(`${BINFMT}/${entryName}`, 'utf8')) ? 'enabled' : 'disabled';
  const hostArch = await exec('dpkg', ['--print-architecture'])
    .then((r) => r.stdout.trim())
    .catch(() => process.arch);
  const qemu = [`${entryName}-static`, entryName];
  const missing = new Set(await missingTools(['mmdebstrap', 'arch-test', 'update-binfmts', ...qemu]));
  const archTest = !missing.has('arch-test');
  return {
    hostArch,
    arch,
    runs: archTest ? await archRuns(arch) : false,
    binfmtMounted: mounted,
    entry,
    root: process.geteuid?.() === 0,
    tools: {
      mmdebstrap: !missing.has('mmdebstrap'),
      archTest,
      updateBinfmts: !missing.has('update-binfmts'),
      qemuUser: qemu.some((q) => !missing.has(q)),
    },
  };
}

/**
 * Make `arch` binaries runnable here, or throw IMAGE_ERR_FOREIGN_ARCH saying what is missing.
 * Returns the steps that were taken (empty when it already worked).
 */
export async function ensureForeignArch(
  arch: DebianArch,
  log: (msg: string) => void,
): Promise<ForeignArchStep[]> {
  const plan = planForeignArch(await facts(arch));
  if (plan.kind === 'impossible') throw new ImageError('IMAGE_ERR_FOREIGN_ARCH', plan.reason);
  for (const s of plan.steps) {
    log(`foreign arch: ${JSON.stringify(s)}`);
    if (s.kind === 'mount-binfmt') await exec('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]);
    else if (s.kind === 'import') await exec('update-binfmts', ['--import', s.entry]).catch(() => undefined);
    if (s.kind !== 'mount-binfmt') await exec('update-binfmts', ['--enable', s.entry]);
  }
  if (plan.steps.length && !(await archRuns(arch)))
    throw new ImageError(
      'IMAGE_ERR_FOREIGN_ARCH',
      `${arch} binaries still do not run after ${plan.steps.map((s) => s.kind).join(', ')} (is the kernel's binfmt_misc available in this container?)`,
    );
  return plan.steps;
}
