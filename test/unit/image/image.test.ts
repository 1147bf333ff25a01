/**
 * The pure parts of the image build and the SD-card writer: layouts and fixed
 * UUIDs, genimage configurations, the U-Boot environment codec, the settings
 * file, the native add-on filter, inode bookkeeping, apt mirror discovery,
 * first-boot provisioning against a temp root, and flash-sd against a fake
 * /sys tree with a regular file standing in for the card.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import { parseAutoboot } from '../../../firmware/update/boot-selector.js';
import { checkTarget, flashImage, inspectTarget } from '../../../scripts/flash/flash-sd.js';
import { mirrorFromSources, mmdebstrapArgs } from '../../../scripts/image/base.js';
import { runImageCli } from '../../../scripts/image/cli.js';
import { runFlashCli } from '../../../scripts/flash/flash-sd.js';
import { usedInodes, wantedBy } from '../../../scripts/image/build.js';
import { ImageError } from '../../../scripts/image/errors.js';
import { deviceHostname, runFirstBoot } from '../../../scripts/image/firstboot.js';
import {
  fsTimestamp,
  genimageDiskConfig,
  genimageFsConfig,
  imageProfile,
  piAutoboot,
  piCmdline,
  stableUuid,
  ubootEnvVars,
} from '../../../scripts/image/layout.js';
import { nativeBinaryFits } from '../../../scripts/image/runtime.js';
import { parseSettings, renderSettingsTemplate } from '../../../scripts/image/settings.js';
import { crc32, decodeUbootEnv, encodeUbootEnv } from '../../../scripts/image/uboot-env.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const rpi = loadBoardConfig(join(ROOT, 'board-configs/rpi4-hifiberry-dacplusadc.json'));
const bbb = loadBoardConfig(join(ROOT, 'board-configs/beaglebone-black.json'));
const virt = loadBoardConfig(join(ROOT, 'board-configs/virtual.json'));

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as ImageError).code;
  }
  return undefined;
};

t.test('layouts', async (t) => {
  const p = imageProfile(rpi);
  t.equal(p.kind, 'rpi-ab-gpt');
  t.equal(p.arch, 'arm64');
  t.same(
    p.partitions.map((x) => `${x.number}:${x.name}`),
    ['1:bootconfig', '2:boot_a', '3:boot_b', '4:system_a', '5:system_b', '6:persistent'],
  );
  t.same(imageProfile(rpi), p, 'the same board gives the same UUIDs every time');
  t.not(imageProfile(rpi, 'other-seed').diskUuid, p.diskUuid, 'the seed changes them');
  t.match(stableUuid('x', 'y'), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(new Set(p.partitions.map((x) => x.uuid)).size, 6, 'partition UUIDs are distinct');
  t.same(parseAutoboot(piAutoboot(p)), { all: 2, tryboot: 3 }, 'autoboot.txt agrees with the update code');
  t.ok(piAutoboot(p).length <= 512, 'autoboot.txt fits the 512-byte limit');
  t.match(piCmdline(p, 'b'), `root=PARTUUID=${p.partitions[4]?.uuid}`);
  t.equal(
    codeOf(() => imageProfile(virt)),
    'IMAGE_ERR_BOARD',
    'the virtual board has no card',
  );

  const b = imageProfile(bbb);
  t.equal(b.kind, 'uboot-ab-mbr');
  t.equal(b.arch, 'armhf');
  t.same(
    b.partitions.map((x) => x.name),
    ['boot', 'system_a', 'system_b', 'persistent'],
  );
  t.equal(b.partitions[1]?.uuid, `${b.diskSignature}-02`, 'MBR PARTUUIDs are <signature>-<number>');
  const env = ubootEnvVars(b);
  t.match(env['qperiph_boot'], `root=\${qp_root}`);
  t.match(env['qperiph_boot'], `PARTUUID=${b.diskSignature}-03`);

  const fsCfg = genimageFsConfig({
    profile: p,
    sizes: { bootconfigMiB: 32, bootMiB: 256, systemMiB: 300, persistentMiB: 64 },
    rootDir: '/w/root',
    bootEntries: ['cmdline.txt', 'start4.elf'],
    bootconfigEntries: ['autoboot.txt'],
    fsTimestamp: fsTimestamp(1_700_000_000),
  });
  t.match(fsCfg, /image boot-b\.vfat[\s\S]*file "cmdline\.txt" \{ image = "slot-b\/cmdline\.txt" \}/);
  t.match(fsCfg, /srcpath = "\/w\/root"/);
  t.match(fsCfg, /fs-timestamp = "20231114221320"/);
  t.match(fsCfg, `-U ${p.ext4.system.uuid} -E hash_seed=${p.ext4.system.hashSeed}`);
  t.match(fsCfg, `-i ${p.vfatIds.boot} --invariant`);
  const disk = genimageDiskConfig(p, 'card.img');
  t.match(disk, /partition-table-type = "gpt"/);
  t.match(disk, /partition boot_b \{\s+image = "boot-b\.vfat"/);
  t.equal((disk.match(/image = "system\.ext4"/g) ?? []).length, 2, 'A and B system slots: one file');
  const mbr = genimageDiskConfig(b, 'card.img');
  t.match(mbr, /partition-table-type = "mbr"/);
  t.match(mbr, /offset = 2490368/);
  t.match(mbr, /bootable = true/);
});

t.test('U-Boot environment codec', async (t) => {
  t.equal(crc32(Buffer.from('123456789')), 0xcbf43926, 'CRC-32 check value');
  const vars = { b: 'two words', a: '1', BOOT_ORDER: 'A B' };
  for (const redundant of [false, true]) {
    const blob = encodeUbootEnv(vars, { size: 4096, redundant, flags: 7 });
    t.equal(blob.length, 4096);
    const back = decodeUbootEnv(blob, redundant);
    t.same(back.vars, vars);
    t.equal(back.flags, redundant ? 7 : null);
    const bad = Buffer.from(blob);
    bad[100] = 0x41;
    t.throws(() => decodeUbootEnv(bad, redundant), { code: 'IMAGE_ERR_UBOOT_ENV', offset: 0 }, 'CRC checked');
  }
  const blob = encodeUbootEnv({ b: '1', a: '2' }, { size: 64, redundant: false });
  t.equal(
    blob.subarray(4, 13).toString('latin1'),
    'a=2\0b=1\0\0',
    'sorted, NUL separated, double NUL at the end',
  );
  t.equal(blob[63], 0xff, 'padded with 0xff');
  t.throws(() => encodeUbootEnv({ big: 'x'.repeat(100) }, { size: 64, redundant: false }), {
    code: 'IMAGE_ERR_UBOOT_ENV',
  });
  t.throws(() => encodeUbootEnv({ 'bad name': 'x' }, { size: 64, redundant: false }), {
    code: 'IMAGE_ERR_UBOOT_ENV',
  });
  // framing error: an entry without '=', with a correct CRC
  const raw = Buffer.alloc(32, 0xff);
  Buffer.from('noequals\0\0').copy(raw, 4);
  raw.writeUInt32LE(crc32(raw.subarray(4)), 0);
  t.throws(() => decodeUbootEnv(raw, false), { code: 'IMAGE_ERR_UBOOT_ENV', offset: 4 });
});

t.test('settings file', async (t) => {
  const tpl = parseSettings(renderSettingsTemplate('Model X'));
  t.same(
    tpl,
    { name: '', network: { mode: 'dhcp' }, wifi: null, dot1x: null, coreAddress: '', sshKeys: [] },
    'the shipped template parses to defaults',
  );
  const s = parseSettings(
    '\uFEFF# comment\r\nname = bench-07\r\nnetwork = static\r\naddress = 10.0.0.7/24\r\ngateway = 10.0.0.1\r\ndns = 10.0.0.2, 10.0.0.3\r\n' +
      'wifi_ssid = lab\r\nwifi_psk = secret123\r\neap = tls\r\neap_identity = dev7\r\neap_ca_cert = ca.pem\r\neap_client_cert = dev.pem\r\neap_private_key = dev.key\r\n' +
      'core_address = core.lab.example\r\nssh_key = ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB tester@lab\r\nssh_key = ssh-ed25519 AAAAB second\r\n',
  );
  t.same(s.network, {
    mode: 'static',
    address: '10.0.0.7',
    prefix: 24,
    gateway: '10.0.0.1',
    dns: ['10.0.0.2', '10.0.0.3'],
  });
  t.same(s.wifi, { ssid: 'lab', psk: 'secret123' });
  t.equal(s.dot1x?.eap, 'tls');
  t.equal(s.sshKeys.length, 2);
  t.ok(Object.isFrozen(s));
  const bad: Array<[string, number]> = [
    ['frobnicate = 1', 1],
    ['name = a\nname = b', 2],
    ['network = static\naddress = 10.0.0.1', 2],
    ['network = ppp', 1],
    ['\n\nwifi_ssid = x\nwifi_psk = short', 4],
    ['eap = tls\neap_identity = x', 1],
    [
      'eap = tls\neap_identity = x\neap_ca_cert = ../../etc/shadow\neap_client_cert = a\neap_private_key = b',
      3,
    ],
    ['core_address = not an address', 1],
    ['ssh_key = hello', 1],
    ['just text', 1],
  ];
  for (const [text, line] of bad)
    t.throws(() => parseSettings(text), { code: 'IMAGE_ERR_SETTINGS', offset: line }, JSON.stringify(text));
});

t.test('native add-on filter and inode bookkeeping', async (t) => {
  const elf = (cls: number, machine: number): Buffer => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(0x7f454c46, 0);
    b[4] = cls;
    b[5] = 1;
    b.writeUInt16LE(machine, 18);
    return b;
  };
  t.equal(nativeBinaryFits(elf(2, 183), 'arm64'), 'match');
  t.equal(nativeBinaryFits(elf(2, 62), 'arm64'), 'foreign', 'x86-64');
  t.equal(nativeBinaryFits(elf(1, 40), 'armhf'), 'match');
  t.equal(nativeBinaryFits(elf(1, 40), 'arm64'), 'foreign');
  t.equal(
    nativeBinaryFits(Buffer.from('\xcf\xfa\xed\xfe'.padEnd(20, '\0'), 'latin1'), 'arm64'),
    'foreign',
    'Mach-O',
  );
  t.equal(nativeBinaryFits(Buffer.alloc(4), 'arm64'), 'foreign', 'too short');
  const dump =
    'Inode count:              32\nInodes per group:         16\nGroup 0:\n  Free inodes: 14-16\nGroup 1:\n  Free inodes: 17-20, 25, 27-32\n';
  t.same(usedInodes(dump), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 21, 22, 23, 24, 26]);
  t.throws(() => usedInodes('nothing'), { code: 'IMAGE_ERR_TOOL_FAILED' });
});

t.test('mirror from apt sources, mmdebstrap command', async (t) => {
  t.equal(
    mirrorFromSources(
      '# x\ndeb http://mirror.invalid/debian bookworm main\ndeb http://sec.invalid/debian-security bookworm-security main\n',
    ),
    'http://mirror.invalid/debian',
  );
  t.equal(
    mirrorFromSources('deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian/ trixie main'),
    'http://m.invalid/debian',
  );
  t.equal(
    mirrorFromSources('Types: deb\nURIs: http://deb822.invalid/debian\nSuites: trixie\n'),
    'http://deb822.invalid/debian',
  );
  t.equal(mirrorFromSources('Types: deb\nURIs: http://x.invalid/debian-security\n'), null);
  const args = mmdebstrapArgs(imageProfile(rpi), 'http://m.invalid/debian', '/o/base.tar');
  t.ok(args.includes('--architectures=arm64'));
  t.match(
    args.find((a) => a.startsWith('--include=')),
    /raspi-firmware.*|nodejs/,
  );
  t.same(args.slice(-3), ['trixie', '/o/base.tar', 'http://m.invalid/debian']);
  t.ok(args.includes('--dpkgopt=force-unsafe-io'));
  // the licence files survive the doc filter: include comes after the exclude it narrows
  const ex = args.indexOf('--dpkgopt=path-exclude=/usr/share/doc/*');
  t.ok(ex > 0 && args.indexOf('--dpkgopt=path-include=/usr/share/doc/*/copyright') > ex);
  t.ok(mmdebstrapArgs(imageProfile(bbb), 'm', 'o').includes('--architectures=armhf'));
});

t.test('first boot provisioning (temp root)', async (t) => {
  const root = t.testdir({
    sys: { class: { net: { eth0: { address: 'dc:a6:32:12:ab:cd\n' } } } },
    boot: {
      bootconfig: {
        'qperiph.txt':
          'network = static\r\naddress = 192.168.5.9/24\r\ngateway = 192.168.5.1\r\neap = peap\r\neap_identity = u\r\neap_password = p\r\ncore_address = 192.168.5.2\r\nssh_key = ssh-ed25519 AAAA k\r\n',
      },
    },
    etc: {},
  });
  t.equal(deviceHostname('qperiph-rpi4', 'dc:a6:32:12:ab:cd', ''), 'qperiph-rpi4-abcd');
  const o = { root, settingsDir: 'boot/bootconfig', lanInterface: 'eth0', hostnamePrefix: 'qperiph-rpi4' };
  const r1 = await runFirstBoot(o);
  t.same(r1, { applied: true, hostname: 'qperiph-rpi4-abcd' });
  t.equal(await readFile(join(root, 'etc/hostname'), 'utf8'), 'qperiph-rpi4-abcd\n');
  const net = await readFile(join(root, 'etc/systemd/network/20-qperiph-eth0.network'), 'utf8');
  t.match(net, /Address=192\.168\.5\.9\/24/);
  t.match(net, /Gateway=192\.168\.5\.1/);
  t.match(
    await readFile(join(root, 'etc/wpa_supplicant/wpa_supplicant-wired-eth0.conf'), 'utf8'),
    /eap=PEAP/,
  );
  t.same(JSON.parse(await readFile(join(root, 'etc/qperiph/core.json'), 'utf8')), {
    coreAddress: '192.168.5.2',
  });
  t.equal(await readFile(join(root, 'root/.ssh/authorized_keys'), 'utf8'), 'ssh-ed25519 AAAA k\n');
  t.same(
    await runFirstBoot(o),
    { applied: false, hostname: 'qperiph-rpi4-abcd' },
    'second run: nothing to do',
  );
  await writeFile(join(root, 'boot/bootconfig/qperiph.txt'), 'name = renamed\n');
  t.same(await runFirstBoot(o), { applied: true, hostname: 'renamed' }, 'an edited file is applied');
  await writeFile(join(root, 'boot/bootconfig/qperiph.txt'), 'network = ppp\n');
  const bad = await runFirstBoot(o);
  t.equal(bad.applied, false);
  t.equal(bad.hostname, 'renamed', 'a broken file keeps the last good state');
  t.match(bad.error, /line 1/);
});

t.test('flash-sd against a fake /sys tree', async (t) => {
  const dir = t.testdir({
    sys: {
      block: {
        sdz: { size: '4096\n', removable: '1\n', device: { vendor: 'Generic ', model: 'SD Reader\n' } },
        nvme9n1: { size: '99999999\n', removable: '0\n', device: { model: 'Fixed SSD\n' } },
        sdy: { size: '4096\n', removable: '1\n' },
        sdx: { size: '8\n', removable: '1\n' },
      },
    },
    proc: { mounts: '/dev/nvme9n1p2 / ext4 rw 0 0\nDEV/sdy1 /media/card vfat rw 0 0\n' },
    dev: {},
  });
  const dev = (n: string): string => join(dir, 'dev', n);
  await writeFile(
    join(dir, 'proc/mounts'),
    (await readFile(join(dir, 'proc/mounts'), 'utf8')).replace('DEV/', `${join(dir, 'dev')}/`),
  );
  const CARD = 4096 * 512;
  for (const n of ['sdz', 'nvme9n1', 'sdy', 'sdx']) await writeFile(dev(n), Buffer.alloc(CARD));
  const image = join(dir, 'card.img');
  const bytes = Buffer.alloc(1_500_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  await writeFile(image, bytes);
  const sys = { sysRoot: dir, allowRegularFile: true };

  const info = await inspectTarget(dev('sdz'), sys);
  t.same(
    { model: info.model, size: info.sizeBytes, removable: info.removable, mounted: info.mounted },
    { model: 'Generic SD Reader', size: 4096 * 512, removable: true, mounted: [] },
  );
  t.throws(() => checkTarget({ ...info, removable: false }, 10), { code: 'FLASH_ERR_NOT_REMOVABLE' });
  await t.rejects(flashImage({ ...sys, image, device: dev('nvme9n1'), yes: true, out: () => {} }), {
    code: 'FLASH_ERR_NOT_REMOVABLE',
  });
  await t.rejects(flashImage({ ...sys, image, device: dev('sdy'), yes: true, out: () => {} }), {
    code: 'FLASH_ERR_MOUNTED',
  });
  await t.rejects(flashImage({ ...sys, image, device: dev('sdx'), yes: true, out: () => {} }), {
    code: 'FLASH_ERR_TOO_SMALL',
  });
  await t.rejects(
    flashImage({ ...sys, image, device: join(dir, 'card.img'), yes: true, out: () => {} }),
    { code: 'FLASH_ERR_NOT_BLOCK' },
    'not a whole disk',
  );
  await t.rejects(
    flashImage({ ...sys, image, device: dev('sdz'), yes: false, confirm: async () => 'no', out: () => {} }),
    { code: 'FLASH_ERR_DECLINED' },
  );
  t.same(await readFile(dev('sdz')), Buffer.alloc(CARD), 'nothing written when declined');
  await t.rejects(
    flashImage({ image, device: dev('sdz'), yes: true, sysRoot: dir, out: () => {} }),
    { code: 'FLASH_ERR_NOT_BLOCK' },
    'a regular file is refused for real',
  );

  const lines: string[] = [];
  const seen: string[] = [];
  let asked = '';
  const r = await flashImage({
    ...sys,
    image,
    device: dev('sdz'),
    yes: false,
    blockSize: 256 * 1024,
    confirm: async (q) => ((asked = q), 'sdz'),
    out: (l) => lines.push(l),
    progress: (phase, done, total) => seen.push(`${phase}:${done}/${total}`),
  });
  t.match(asked, /sdz/);
  t.match(lines[0], /Generic SD Reader\s+2\.0 MiB/);
  t.equal(r.sha256, createHash('sha256').update(bytes).digest('hex'));
  t.same((await readFile(dev('sdz'))).subarray(0, bytes.length), bytes, 'the card holds the image');
  t.equal(seen.at(-1), `verify:${bytes.length}/${bytes.length}`);
  t.ok(seen.includes(`write:${bytes.length}/${bytes.length}`));
  t.equal(seen.filter((s) => s.startsWith('write')).length, 6, 'progress per block');
});

t.test('command lines: usage errors exit 2', async (t) => {
  const quiet = t.intercept(process, 'stderr');
  void quiet;
  const out = t.intercept(process, 'stdout');
  void out;
  const env = { ...process.env, QPERIPH_ROOT: ROOT };
  t.equal(await runImageCli([], env), 2, 'no command');
  t.equal(await runImageCli(['--help'], env), 0);
  t.equal(await runImageCli(['frob'], env), 2, 'unknown command');
  t.equal(await runImageCli(['build'], env), 2, 'missing --board');
  t.equal(
    await runImageCli(['build', '--board', 'virtual', '--base', '/nonexistent'], env),
    2,
    'virtual board has no image',
  );
  t.equal(
    await runImageCli(
      ['build', '--board', 'rpi4-hifiberry-dacplusadc', '--base', '/nonexistent/base.tar'],
      env,
    ),
    1,
    'missing base',
  );
  t.equal(
    await runImageCli(['build', '--board', 'rpi4-hifiberry-dacplusadc', '--bogus'], env),
    2,
    'unknown option',
  );
  t.equal(await runFlashCli(['only-one-arg']), 2);
  t.equal(await runFlashCli(['a.img', '/dev/null', '--force']), 2, 'no --force');
  t.equal(
    await runFlashCli(['/nonexistent.img', '/dev/null', '--yes']),
    1,
    'missing image: not a refusal, a failure',
  );
});

t.test('wantedBy: the [Install] targets of a unit', async (t) => {
  t.same(
    wantedBy('[Unit]\nWantedBy=nope.target\n[Socket]\nListenStream=80\n[Install]\nWantedBy=sockets.target\n'),
    ['sockets.target'],
  );
  t.same(wantedBy('[Install]\nWantedBy=a.target  b.target\nWantedBy=c.target\n'), [
    'a.target',
    'b.target',
    'c.target',
  ]);
  t.same(wantedBy('[Service]\nExecStart=/bin/true\n'), []);
});
