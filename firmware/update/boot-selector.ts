/**
 * The BootSelector seam: which slot boots, once on trial, and which is primary.
 * Real bindings: Raspberry Pi tryboot (autoboot.txt + `reboot "0 tryboot"`),
 * U-Boot environment (one atomic `fw_setenv -s` script with BOOT_ORDER and
 * BOOT_x_LEFT). The directory selector serves app slots and development.
 */
import { execFile } from 'node:child_process';
import { open, readFile, readlink, rename, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fsyncDirectory, readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import { UpdateError } from './errors.js';

export type SlotName = 'a' | 'b';
export const otherSlot = (s: SlotName): SlotName => (s === 'a' ? 'b' : 'a');
const isSlot = (v: string): v is SlotName => v === 'a' || v === 'b';

export interface BootSelector {
  readonly kind: 'directory' | 'rpi-tryboot' | 'uboot-env';
  /** The slot the running system booted from. */
  booted(): Promise<SlotName>;
  /** The slot a normal (non-trial) boot picks. */
  primary(): Promise<SlotName>;
  /** Make sure `slot` cannot be booted (before writing it, or after a failed trial). */
  markBad(slot: SlotName): Promise<void>;
  /** The next boot (only that one) goes to `slot`; any later boot returns to the primary. */
  armTrial(slot: SlotName): Promise<void>;
  /** Make `slot` the primary for good (after a healthy trial). One atomic step. */
  commit(slot: SlotName): Promise<void>;
  /** Restart into the armed trial, or normally. */
  reboot(mode: 'trial' | 'normal'): Promise<void>;
}

const exec = promisify(execFile);

/**
 * Slots as directories under `root`: `current` is a symlink to the primary
 * slot (switched by rename), `tryboot` holds a one-shot trial slot, `booted`
 * records what `boot()` picked. For app slots `root/a` and `root/b` hold the
 * runtime; a launcher calls `boot()` and runs `root/<booted>`.
 */
export class DirectoryBootSelector implements BootSelector {
  readonly kind = 'directory' as const;
  constructor(
    readonly root: string,
    private readonly onReboot: (mode: 'trial' | 'normal') => Promise<void> | void = () => undefined,
  ) {}

  private p(n: string): string {
    return join(this.root, n);
  }

  async primary(): Promise<SlotName> {
    const t = await readlink(this.p('current')).catch(() => 'a');
    if (!isSlot(t)) throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', `current points to '${t}'`);
    return t;
  }

  async booted(): Promise<SlotName> {
    const b = (await readFileIfExists(this.p('booted')))?.toString('utf8').trim();
    if (b && isSlot(b)) return b;
    return this.primary();
  }

  /** What the boot firmware (or the launcher) does at power-on: consume the one-shot flag. */
  async boot(): Promise<SlotName> {
    const trial = (await readFileIfExists(this.p('tryboot')))?.toString('utf8').trim();
    let slot: SlotName;
    if (trial !== undefined) {
      await unlink(this.p('tryboot')).catch(() => undefined);
      await fsyncDirectory(this.root);
      slot = trial && isSlot(trial) && !(await this.isBad(trial)) ? trial : await this.primary();
    } else {
      slot = await this.primary();
    }
    await writeFileAtomic(this.p('booted'), slot);
    return slot;
  }

  async isBad(slot: SlotName): Promise<boolean> {
    return (await readFileIfExists(this.p(`bad-${slot}`))) !== null;
  }

  async markBad(slot: SlotName): Promise<void> {
    const trial = (await readFileIfExists(this.p('tryboot')))?.toString('utf8').trim();
    if (trial === slot) {
      await unlink(this.p('tryboot')).catch(() => undefined);
    }
    await writeFileAtomic(this.p(`bad-${slot}`), 'bad');
  }

  async armTrial(slot: SlotName): Promise<void> {
    await unlink(this.p(`bad-${slot}`)).catch(() => undefined);
    await writeFileAtomic(this.p('tryboot'), slot);
  }

  async commit(slot: SlotName): Promise<void> {
    const tmp = this.p(`.current-${process.pid}`);
    await unlink(tmp).catch(() => undefined);
    await symlink(slot, tmp);
    await rename(tmp, this.p('current'));
    await unlink(this.p('tryboot')).catch(() => undefined);
    await unlink(this.p(`bad-${slot}`)).catch(() => undefined);
    await fsyncDirectory(this.root);
  }

  async reboot(mode: 'trial' | 'normal'): Promise<void> {
    await this.onReboot(mode);
  }
}

/** Create the directory layout with `current -> a` when it is missing. */
export async function initDirectorySlots(root: string): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(root, 'a'), { recursive: true });
  await mkdir(join(root, 'b'), { recursive: true });
  const cur = await readlink(join(root, 'current')).catch(() => null);
  if (cur === null) {
    await symlink('a', join(root, 'current'));
    await fsyncDirectory(root);
  }
}

// ---- Raspberry Pi tryboot ----

export interface TrybootOptions {
  /** Mounted bootconfig partition holding autoboot.txt. */
  bootConfigDir: string;
  /** Partition numbers of the slots' boot partitions, e.g. { a: 2, b: 3 }. */
  partitions: Record<SlotName, number>;
  /** Default /proc/device-tree/chosen/bootloader. */
  deviceTreeDir?: string;
  /** Environment for the reboot command (PATH). */
  env?: NodeJS.ProcessEnv;
}

/** The autoboot.txt text: [all] normal partition, [tryboot] the trial partition. Padded to a fixed length. */
export function renderAutoboot(primaryPartition: number, trialPartition: number): string {
  const body = `[all]\ntryboot_a_b=1\nboot_partition=${primaryPartition}\n[tryboot]\nboot_partition=${trialPartition}\n`;
  return body + '#'.repeat(Math.max(0, 127 - body.length)) + '\n';
}

export function parseAutoboot(text: string): { all: number | null; tryboot: number | null } {
  let section = 'all';
  const out: { all: number | null; tryboot: number | null } = { all: null, tryboot: null };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) {
      section = sec[1] as string;
      continue;
    }
    const m = /^boot_partition=(\d+)$/.exec(line);
    if (m && (section === 'all' || section === 'tryboot')) out[section] = Number(m[1]);
  }
  return out;
}

export class TrybootSelector implements BootSelector {
  readonly kind = 'rpi-tryboot' as const;
  private readonly dt: string;
  constructor(private readonly o: TrybootOptions) {
    this.dt = o.deviceTreeDir ?? '/proc/device-tree/chosen/bootloader';
  }

  private slotOf(partition: number): SlotName {
    if (partition === this.o.partitions.a) return 'a';
    if (partition === this.o.partitions.b) return 'b';
    throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', `partition ${partition} is not a slot`);
  }

  private async readAutoboot(): Promise<{ all: number | null; tryboot: number | null }> {
    const t = await readFileIfExists(join(this.o.bootConfigDir, 'autoboot.txt'));
    return parseAutoboot(t?.toString('utf8') ?? '');
  }

  /** Overwrite autoboot.txt in place (FAT has no atomic rename): one fixed-length write + fsync. */
  private async writeAutoboot(primary: SlotName, trial: SlotName): Promise<void> {
    const fh = await open(join(this.o.bootConfigDir, 'autoboot.txt'), 'a+').then(async (h) => {
      await h.close();
      return open(join(this.o.bootConfigDir, 'autoboot.txt'), 'r+');
    });
    try {
      const b = Buffer.from(renderAutoboot(this.o.partitions[primary], this.o.partitions[trial]));
      await fh.write(b, 0, b.length, 0);
      await fh.truncate(b.length);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async booted(): Promise<SlotName> {
    const raw = await readFile(join(this.dt, 'partition')).catch(() => null);
    if (!raw || raw.length < 4) return this.primary();
    return this.slotOf(raw.readUInt32BE(0));
  }

  async primary(): Promise<SlotName> {
    const a = await this.readAutoboot();
    return a.all === null ? 'a' : this.slotOf(a.all);
  }

  async markBad(slot: SlotName): Promise<void> {
    const primary = await this.primary();
    if (primary === slot)
      throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', 'refusing to mark the primary slot bad');
    await this.writeAutoboot(primary, primary);
  }

  async armTrial(slot: SlotName): Promise<void> {
    await this.writeAutoboot(await this.primary(), slot);
  }

  async commit(slot: SlotName): Promise<void> {
    await this.writeAutoboot(slot, otherSlot(slot));
  }

  async reboot(mode: 'trial' | 'normal'): Promise<void> {
    try {
      await exec('reboot', mode === 'trial' ? ['0 tryboot'] : [], { env: this.o.env ?? process.env });
    } catch (err) {
      throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', 'reboot failed', { cause: err });
    }
  }
}

// ---- U-Boot environment ----

export interface UbootOptions {
  /** Slot names in the environment, e.g. { a: 'A', b: 'B' }. */
  names?: Record<SlotName, string>;
  /** Kernel command line holding `qperiph.slot=A` (default /proc/cmdline). */
  cmdlinePath?: string;
  /** Attempts given to a committed slot. */
  attempts?: number;
  env?: NodeJS.ProcessEnv;
}

export class UbootSelector implements BootSelector {
  readonly kind = 'uboot-env' as const;
  private readonly names: Record<SlotName, string>;
  constructor(private readonly o: UbootOptions = {}) {
    this.names = o.names ?? { a: 'A', b: 'B' };
  }

  private slotOf(name: string): SlotName {
    if (name === this.names.a) return 'a';
    if (name === this.names.b) return 'b';
    throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', `unknown U-Boot slot '${name}'`);
  }

  async readEnv(): Promise<Record<string, string>> {
    const keys = ['BOOT_ORDER', `BOOT_${this.names.a}_LEFT`, `BOOT_${this.names.b}_LEFT`];
    const out: Record<string, string> = {};
    for (const k of keys) {
      try {
        const { stdout } = await exec('fw_printenv', [k], { env: this.o.env ?? process.env });
        const eq = stdout.indexOf('=');
        if (eq > 0) out[k] = stdout.slice(eq + 1).trim();
      } catch {
        // unset variable: fw_printenv exits non-zero
      }
    }
    return out;
  }

  /** All variables in one `fw_setenv -s` script: the environment changes atomically. */
  private async setEnv(vars: Record<string, string>): Promise<void> {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'qperiph-fwenv-'));
    const script = join(dir, 'env.txt');
    try {
      await writeFile(
        script,
        Object.entries(vars)
          .map(([k, v]) => `${k} ${v}\n`)
          .join(''),
      );
      await exec('fw_setenv', ['-s', script], { env: this.o.env ?? process.env });
    } catch (err) {
      throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', 'fw_setenv failed', { cause: err });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async booted(): Promise<SlotName> {
    const cmdline = await readFile(this.o.cmdlinePath ?? '/proc/cmdline', 'utf8').catch(() => '');
    const m = /(?:^|\s)(?:qperiph|rauc)\.slot=(\S+)/.exec(cmdline);
    return m ? this.slotOf(m[1] as string) : this.primary();
  }

  async primary(): Promise<SlotName> {
    const env = await this.readEnv();
    for (const n of (env['BOOT_ORDER'] ?? `${this.names.a} ${this.names.b}`).split(/\s+/)) {
      if (!n) continue;
      if (Number(env[`BOOT_${n}_LEFT`] ?? '0') > 0) return this.slotOf(n);
    }
    return 'a';
  }

  async markBad(slot: SlotName): Promise<void> {
    const o = otherSlot(slot);
    await this.setEnv({ BOOT_ORDER: this.names[o], [`BOOT_${this.names[slot]}_LEFT`]: '0' });
  }

  async armTrial(slot: SlotName): Promise<void> {
    const o = otherSlot(slot);
    const env = await this.readEnv();
    await this.setEnv({
      BOOT_ORDER: `${this.names[slot]} ${this.names[o]}`,
      [`BOOT_${this.names[slot]}_LEFT`]: '1',
      [`BOOT_${this.names[o]}_LEFT`]: env[`BOOT_${this.names[o]}_LEFT`] ?? String(this.o.attempts ?? 3),
    });
  }

  async commit(slot: SlotName): Promise<void> {
    const o = otherSlot(slot);
    await this.setEnv({
      BOOT_ORDER: `${this.names[slot]} ${this.names[o]}`,
      [`BOOT_${this.names[slot]}_LEFT`]: String(this.o.attempts ?? 3),
    });
  }

  async reboot(_mode: 'trial' | 'normal'): Promise<void> {
    try {
      await exec('reboot', [], { env: this.o.env ?? process.env });
    } catch (err) {
      throw new UpdateError('UPDATE_ERR_BOOT_SELECTOR', 'reboot failed', { cause: err });
    }
  }
}
