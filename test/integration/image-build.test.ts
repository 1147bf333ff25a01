/**
 * The image pipeline end to end from a synthetic base root file system:
 * genimage + mtools + mke2fs -d, no mounts. Checks the partition tables
 * (sfdisk --json), boot files (mtools), root file system (debugfs, e2fsck -fn),
 * the U-Boot environment, reproducibility, and the signed bundle against the
 * anchors provisioned in the image.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { verifyBundleFile } from '../../firmware/update/bundle.js';
import { createPki, derToPem } from '../../firmware/update/pki.js';
import { loadTrustStore } from '../../firmware/update/trust.js';
import { buildImage, missingTools, REQUIRED_TOOLS, type BuildOptions } from '../../scripts/image/build.js';
import { inspectImage } from '../../scripts/image/cli.js';
import type { ImageError } from '../../scripts/image/errors.js';
import { UBOOT_ENV } from '../../scripts/image/layout.js';
import { makeSyntheticBase } from '../../scripts/image/synthetic-base.js';
import { decodeUbootEnv } from '../../scripts/image/uboot-env.js';

const exec = promisify(execFile);
const PROJECT = join(import.meta.dirname, '..', '..');
const SDE = 1_700_000_000;
const ENV = { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`, MTOOLS_SKIP_CHECK: '1' };

const run = async (cmd: string, args: string[]): Promise<string> =>
  (await exec(cmd, args, { env: ENV, maxBuffer: 64 << 20 })).stdout;

interface SfdiskPart {
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  bootable?: boolean;
}

const missing = await missingTools([...REQUIRED_TOOLS, 'sfdisk', 'mdir', 'mtype', 'e2fsck']);
const built = existsSync(join(PROJECT, 'dist/scripts/image/firstboot.js'));
const skip = missing.length
  ? `image tools missing: ${missing.join(', ')} (apt-get install genimage mtools dosfstools e2fsprogs fakeroot fdisk)`
  : built
    ? false
    : 'dist/ not built: run npm run build';

t.test('SD-card image pipeline (synthetic base)', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-image-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  // A frozen copy of the runtime, so other builds of dist/ running in parallel
  // cannot change the bytes between our two reproducibility builds.
  const proj = join(dir, 'project');
  for (const p of [
    'package.json',
    'board-configs',
    'dist/firmware',
    'dist/scripts/image',
    'scripts/systemd',
    'scripts/image/device',
    'firmware/peripheral-manager/ui',
    'node_modules/ws',
    'node_modules/sockopt',
  ]) {
    await cp(join(PROJECT, p), join(proj, p), { recursive: true, verbatimSymlinks: true });
  }
  const packages = [join(proj, 'node_modules/sockopt'), join(proj, 'node_modules/ws')];
  // A card-CPU node_modules (what 'qperiph image native-modules' makes): ws and sockopt,
  // with sockopt's host build and bogus prebuilds (all macOS/x86-64) replaced by an arm64 ELF.
  const elf = (machine: number): Buffer => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(0x7f454c46, 0);
    b[4] = 2;
    b[5] = 1;
    b.writeUInt16LE(machine, 18);
    return b;
  };
  const native = join(dir, 'native-arm64/node_modules');
  for (const p of ['ws', 'sockopt'])
    await cp(join(proj, 'node_modules', p), join(native, p), { recursive: true, verbatimSymlinks: true });
  await rm(join(native, 'sockopt/prebuilds'), { recursive: true, force: true });
  await rm(join(native, 'sockopt/build'), { recursive: true, force: true });
  await mkdir(join(native, 'sockopt/build/Release'), { recursive: true });
  await writeFile(join(native, 'sockopt/build/Release/sockopt.node'), elf(183));

  const pki = createPki({ nowMs: SDE * 1000 });
  const anchors = join(dir, 'anchor.pem');
  const key = join(dir, 'signer.key');
  const chain = join(dir, 'chain.pem');
  await writeFile(anchors, derToPem(pki.root.der));
  await writeFile(key, pki.signer.key.export({ format: 'pem', type: 'pkcs8' }).toString());
  await writeFile(chain, derToPem(pki.signer.der));

  const rpi = loadBoardConfig(join(PROJECT, 'board-configs/rpi4-hifiberry-dacplusadc.json'));
  const piBase = join(dir, 'base-rpi.tar');
  await makeSyntheticBase(piBase, 'rpi-ab-gpt', SDE);
  const common = (out: string): BuildOptions => ({
    projectRoot: proj,
    board: rpi,
    baseTarball: piBase,
    outDir: join(dir, out),
    sourceDateEpoch: SDE,
    version: '1.2.3',
    sizes: { bootconfigMiB: 8, bootMiB: 16, persistentMiB: 8 },
    anchorsPem: [anchors],
    signing: { keyPem: key, chainPem: chain },
    packages,
    nativeModules: native,
  });
  const first = await buildImage(common('out1'));
  const card = first.card;

  await t.test('GPT A/B layout (sfdisk --json)', async (t) => {
    const table = JSON.parse(await run('sfdisk', ['--json', card])) as {
      partitiontable: { label: string; id: string; partitions: SfdiskPart[] };
    };
    t.equal(table.partitiontable.label, 'gpt');
    const parts = table.partitiontable.partitions;
    t.same(
      parts.map((p) => p.name),
      ['bootconfig', 'boot_a', 'boot_b', 'system_a', 'system_b', 'persistent'],
    );
    t.equal(parts[0]?.type, 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7', 'FAT partitions are basic data');
    t.equal(parts[3]?.type, '0FC63DAF-8483-4772-8E79-3D69D8477DE4', 'system partitions are Linux');
    t.equal(parts[3]?.size, parts[4]?.size, 'A and B system slots are the same size');
    for (const p of parts) t.equal(p.start % 8192, 0, `${p.name} aligned to 4 MiB`);
    const cmdA = await run('mtype', ['-i', join(dir, 'out1/boot.vfat'), '::cmdline.txt']);
    const cmdB = await run('mtype', ['-i', join(dir, 'out1/boot-b.vfat'), '::cmdline.txt']);
    t.match(cmdA, `root=PARTUUID=${parts[3]?.uuid?.toLowerCase()}`, 'boot_a boots system_a');
    t.match(cmdB, `root=PARTUUID=${parts[4]?.uuid?.toLowerCase()}`, 'boot_b boots system_b');
    t.match(cmdA, /qperiph\.slot=a/);
    // Without `rw` (and with no `/` line in fstab) the root stays read-only and first boot fails.
    t.match(cmdA, / rw /, 'boot_a mounts its root read-write');
    t.match(cmdB, / rw /, 'boot_b mounts its root read-write');
    t.match(cmdA, / net\.ifnames=0 /, "LAN A keeps the board config's name (eth0, not end0)");
    const seen = await inspectImage(card);
    t.same(seen.partitions[0]?.files, ['autoboot.txt', 'qperiph.txt'], 'inspect lists the bootconfig files');
    t.ok(seen.partitions[2]?.files?.includes('config.txt'), 'inspect reads boot_b inside the card');
  });

  await t.test('boot files (mtools)', async (t) => {
    const listing = await run('mdir', ['-b', '-i', join(dir, 'out1/boot.vfat'), '::']);
    for (const f of [
      'start4.elf',
      'fixup4.dat',
      'vmlinuz',
      'initrd.img',
      'config.txt',
      'cmdline.txt',
      'overlays',
    ])
      t.match(listing, f);
    t.match(
      await run('mtype', ['-i', join(dir, 'out1/boot.vfat'), '::config.txt']),
      /dtoverlay=hifiberry-dacplusadc/,
    );
    const autoboot = await run('mtype', ['-i', join(dir, 'out1/bootconfig.vfat'), '::autoboot.txt']);
    t.match(autoboot, /\[all\]\s+tryboot_a_b=1\s+boot_partition=2\s+\[tryboot\]\s+boot_partition=3/);
    const settings = await run('mtype', ['-i', join(dir, 'out1/bootconfig.vfat'), '::qperiph.txt']);
    t.match(settings, /core_address =/);
    t.match(settings, /\r\n/, 'CRLF so Windows editors keep it intact');
  });

  await t.test('root file system (debugfs, e2fsck -fn)', async (t) => {
    const sys = join(dir, 'out1/system.ext4');
    const fsck = await exec('e2fsck', ['-fn', sys], { env: ENV }).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    t.equal(fsck, 0, 'e2fsck -fn clean');
    const dbg = (cmd: string): Promise<string> => run('debugfs', ['-R', cmd, sys]);
    t.match(await dbg('cat /etc/os-release'), /synthetic qperiph test base/, 'the base is in');
    t.match(await dbg('cat /opt/qperiph/factory/dist/firmware/cli.js'), /qperiph/, 'the runtime is in');
    t.match(
      await dbg('cat /etc/systemd/system/qperiph.service'),
      /ExecStart=\/usr\/bin\/node \/opt\/qperiph\/factory\/dist\/firmware\/launch\.js --app-root \/opt\/qperiph\/slots /,
      'the unit runs the launcher from the factory tree',
    );
    t.match(await dbg('ls /opt/qperiph/factory/dist/firmware'), /launch\.js/);
    t.match(
      await dbg('stat /opt/qperiph/slots/current'),
      /Fast link dest: "a"/,
      'slots as initDirectorySlots makes them',
    );
    t.notMatch(
      await dbg('ls /opt/qperiph/slots/a'),
      /dist/,
      'slot a empty: a fresh card runs the factory tree',
    );
    t.match(await dbg('cat /etc/tmpfiles.d/qperiph.conf'), /d \/opt\/qperiph\/slots 0755 qperiph qperiph/);
    t.match(await dbg('ls /opt/qperiph/factory/dist/scripts/image'), /firstboot\.js/);
    t.match(
      await dbg('cat /etc/systemd/system/qperiph-firstboot.service'),
      /\/opt\/qperiph\/factory\/dist\/scripts\/image\/firstboot\.js/,
    );
    t.match(await dbg('ls /etc/systemd/system/sockets.target.wants'), /qperiph-manager\.socket/);
    const wants = await dbg('ls -l /etc/systemd/system/multi-user.target.wants');
    t.match(wants, /qperiph\.service/);
    t.notMatch(wants, /ptp4l@/, "ptp4l is the runtime's supervised child, not a second unit");
    t.match(
      await dbg('stat /etc/systemd/system/multi-user.target.wants/qperiph.service'),
      /Fast link dest: "\/etc\/systemd\/system\/qperiph\.service"/,
    );
    t.match(await dbg('cat /etc/systemd/system/qperiph.service'), /Type=notify/);
    t.match(await dbg('ls /etc/systemd/system/sysinit.target.wants'), /qperiph-firstboot\.service/);
    t.match(await dbg('cat /etc/qperiph/board.json'), /"id": "rpi4-hifiberry-dacplusadc"/);
    t.match(await dbg('cat /etc/fstab'), /\/persistent ext4/);
    t.equal((await dbg('cat /etc/machine-id')).trim(), '', 'machine-id empty: made on first boot');
    t.notMatch(await dbg('ls /etc/ssh'), /ssh_host_/, 'no SSH host keys baked in');
    const sshd = await dbg('cat /etc/ssh/sshd_config.d/10-qperiph.conf');
    t.match(sshd, /PasswordAuthentication no/);
    t.match(
      sshd,
      /HostKey \/persistent\/ssh\/etc\/ssh\/ssh_host_ed25519_key/,
      'host keys kept on /persistent',
    );
    // native add-ons: the card-CPU tree replaces the host's; nothing of the host's goes in
    // The runtime reads the Manager's UI from its tree at start; without it, it exits.
    t.match(await dbg('ls /opt/qperiph/factory/firmware/peripheral-manager/ui'), /index\.html/);
    const release = await dbg('ls /opt/qperiph/factory/node_modules/sockopt/build/Release');
    t.match(release, /sockopt\.node/, 'the arm64 build from --native-modules is in');
    t.notMatch(
      await dbg('ls /opt/qperiph/factory/node_modules/sockopt'),
      /prebuilds/,
      'no host or macOS prebuilds',
    );
    t.match(await dbg('ls /opt/qperiph/factory/node_modules/ws'), /package\.json/);
    t.same(first.runtime.missingNative, [], 'no package left without an add-on for the card');
    t.same(first.runtime.droppedNative, [], 'nothing to drop: the tree was checked whole');
    const st = await dbg('stat /etc/qperiph/board.json');
    t.match(st, /User:\s+0\s+Group:\s+0/, 'owned by root without running as root');
    t.match(st, /ctime: 0x6553f100/, 'change time clamped to SOURCE_DATE_EPOCH');
  });

  await t.test('signed bundle from the same images verifies against the image anchors', async (t) => {
    t.equal(first.bundle.status, 'signed');
    const anchorsDir = join(dir, 'extracted-trust');
    await mkdir(join(anchorsDir, 'release'), { recursive: true });
    await run('debugfs', [
      '-R',
      `dump /etc/qperiph/trust/release/anchor-0.pem ${join(anchorsDir, 'release/anchor-0.pem')}`,
      join(dir, 'out1/system.ext4'),
    ]);
    const store = await loadTrustStore({
      provisionedDir: anchorsDir,
      channel: 'release',
      rotatedFile: join(dir, 'none.json'),
    });
    const head = await verifyBundleFile(first.bundle.file as string, store, {
      product: 'qperiph',
      board: rpi.id,
      securityVersion: 0,
      usedInstallOrders: [],
      nowMs: SDE * 1000,
      lastGoodMs: 0,
      buildTimeMs: 0,
    });
    const byName = Object.fromEntries(first.files.map((f) => [f.name, f.sha256]));
    t.equal(
      head.manifest.payloads.find((p) => p.type === 'rootfs')?.sha256,
      byName['system.ext4'],
      'rootfs payload = system.ext4 on the card',
    );
    t.equal(head.manifest.payloads.find((p) => p.type === 'boot')?.sha256, byName['boot.vfat']);
    const manifest = JSON.parse(await readFile(join(dir, 'out1/manifest.json'), 'utf8')) as {
      files: Array<{ name: string; sha256: string }>;
    };
    t.same(manifest.files, first.files);
  });

  await t.test('reproducible: a second build gives the same bytes', async (t) => {
    const second = await buildImage(common('out2'));
    t.same(second.files, first.files, 'every image has the same SHA-256');
  });

  await t.test(
    'a --native-modules tree with a foreign add-on is refused before anything is written',
    async (t) => {
      const bad = join(dir, 'native-bad/node_modules');
      await cp(native, bad, { recursive: true, verbatimSymlinks: true });
      await writeFile(join(bad, 'sockopt/build/Release/host.node'), elf(62));
      await mkdir(join(bad, 'sockopt/prebuilds/linux-arm64'), { recursive: true });
      await writeFile(
        join(bad, 'sockopt/prebuilds/linux-arm64/node.napi.node'),
        Buffer.from('cffaedfe0c000001', 'hex'),
      );
      const err = await buildImage({ ...common('out-bad'), nativeModules: bad }).then(
        () => null,
        (e: ImageError) => e,
      );
      t.equal(err?.code, 'IMAGE_ERR_NATIVE_FOREIGN');
      t.same(err?.files, ['sockopt/build/Release/host.node', 'sockopt/prebuilds/linux-arm64/node.napi.node']);
      t.match(err?.message, /Mach-O/);
      t.notOk(existsSync(join(dir, 'out-bad')), 'no output dir');
      // the same arm64 tree is foreign to the BeagleBone's armhf
      const bbbErr = await buildImage({
        ...common('out-bad2'),
        board: loadBoardConfig(join(PROJECT, 'board-configs/beaglebone-black.json')),
      }).then(
        () => null,
        (e: ImageError) => e,
      );
      t.equal(bbbErr?.code, 'IMAGE_ERR_NATIVE_FOREIGN');
    },
  );

  await t.test('without a signing key the bundle step says so', async (t) => {
    const o = common('out3');
    delete o.signing;
    delete o.nativeModules;
    o.board = loadBoardConfig(join(PROJECT, 'board-configs/beaglebone-black.json'));
    o.baseTarball = join(dir, 'base-bbb.tar');
    await makeSyntheticBase(o.baseTarball, 'uboot-ab-mbr', SDE);
    const bbb = await buildImage(o);
    t.equal(bbb.bundle.status, 'not-available');
    t.match(bbb.bundle.reason, /bundle signing not available/);
    // BeagleBone: MBR, bootable FAT first, raw U-Boot environment before it.
    const table = JSON.parse(await run('sfdisk', ['--json', bbb.card])) as {
      partitiontable: { label: string; partitions: SfdiskPart[] };
    };
    t.equal(table.partitiontable.label, 'dos');
    t.same(
      table.partitiontable.partitions.map((p) => p.type),
      ['c', '83', '83', '83'],
    );
    t.equal(table.partitiontable.partitions[0]?.bootable, true);
    t.match(await run('mdir', ['-b', '-i', join(dir, 'out3/boot.vfat'), '::']), /MLO/);
    const img = await readFile(bbb.card);
    const env = decodeUbootEnv(img.subarray(UBOOT_ENV.offset, UBOOT_ENV.offset + UBOOT_ENV.size), true);
    t.equal(env.vars['BOOT_ORDER'], 'A B');
    t.equal(env.vars['bootcmd'], 'run qperiph_boot');
    t.match(env.vars['qperiph_boot'], /qperiph\.slot=\$\{qp_slot\}/);
    t.match(env.vars['qperiph_boot'], / rw /, 'the BeagleBone root is mounted read-write');
    const redund = decodeUbootEnv(
      img.subarray(UBOOT_ENV.redundOffset, UBOOT_ENV.redundOffset + UBOOT_ENV.size),
      true,
    );
    t.same(redund.vars, env.vars);
    t.match(
      await run('debugfs', ['-R', 'cat /etc/fw_env.config', join(dir, 'out3/system.ext4')]),
      /\/dev\/mmcblk0 0x260000 0x20000/,
    );
  });
});
