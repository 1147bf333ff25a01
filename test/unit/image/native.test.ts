/**
 * Native add-ons for the card's CPU: the ELF header check (byte fixtures),
 * the tree guard, add-on discovery and gap finding on fixture trees, and the
 * card-CPU node_modules stage with stand-in compiler and node-gyp scripts
 * (the real cross build is in test/integration/image-native.test.ts).
 */
import t from 'tap';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import {
  bootSmoke,
  nextBootPhase,
  qemuArgs,
  virtCmdline,
  type BootProgress,
} from '../../../scripts/image/boot-smoke.js';
import { ImageError } from '../../../scripts/image/errors.js';
import {
  assertNativeTree,
  describeBinary,
  nativeBinaryFits,
  scanNativeTree,
} from '../../../scripts/image/native-check.js';
import {
  addonGaps,
  basenameOf,
  findAddonPackages,
  gypAddonReady,
  napiPlatformPackage,
  otherPlatformPrebuild,
  stageNativeModules,
  withoutFallback,
} from '../../../scripts/image/native-stage.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');

/** An ELF header: class 1/2, data 1 (LE) / 2 (BE), e_machine. */
const elf = (cls: number, machine: number, data = 1): Buffer => {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = cls;
  b[5] = data;
  if (data === 1) b.writeUInt16LE(machine, 18);
  else b.writeUInt16BE(machine, 18);
  return b;
};
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ARM64 = elf(2, 183);
const X64 = elf(2, 62);
const MACHO_ARM64 = hex('cffaedfe 0c000001 00000000 06000000 0000000000000000');

async function tree(files: Record<string, Buffer | string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-native-'));
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), body);
  }
  return dir;
}

const caught = async (p: Promise<unknown>): Promise<ImageError> => {
  try {
    await p;
  } catch (err) {
    return err as ImageError;
  }
  throw new Error('expected a rejection');
};

t.test('describeBinary: byte fixtures', async (t) => {
  t.same(describeBinary(ARM64), { format: 'elf', bits: 64, machine: 183, label: 'ELF 64-bit AArch64' });
  t.same(describeBinary(X64), { format: 'elf', bits: 64, machine: 62, label: 'ELF 64-bit x86-64' });
  t.equal(describeBinary(elf(1, 40)).label, 'ELF 32-bit ARM');
  t.equal(describeBinary(elf(2, 21, 2)).machine, 21, 'big-endian e_machine read big-endian');
  t.equal(describeBinary(elf(2, 183, 2)).machine, 183);
  t.equal(describeBinary(elf(2, 999)).label, 'ELF 64-bit machine 999');
  t.equal(describeBinary(MACHO_ARM64).format, 'mach-o', 'sockopt prebuilds/linux-arm64 is this');
  t.equal(describeBinary(hex('cafebabe 00000002').subarray(0, 8)).format, 'mach-o', 'universal');
  t.equal(describeBinary(hex('feedfacf 0000')).format, 'mach-o', 'big-endian Mach-O');
  t.equal(describeBinary(Buffer.from('MZ\x90\x00', 'latin1')).format, 'pe');
  t.equal(describeBinary(Buffer.alloc(0)).format, 'unknown');
  t.equal(describeBinary(ARM64.subarray(0, 19)).format, 'unknown', 'one byte short of e_machine');
  t.equal(describeBinary(Buffer.from('#!/bin/sh\necho not a binary\n')).format, 'unknown');
  const badClass = Buffer.from(ARM64);
  badClass[4] = 3;
  t.equal(describeBinary(badClass).format, 'unknown');
  const badOrder = Buffer.from(ARM64);
  badOrder[5] = 0;
  t.equal(describeBinary(badOrder).format, 'unknown');
});

t.test('nativeBinaryFits: only a Linux ELF of the card CPU and class', async (t) => {
  t.equal(nativeBinaryFits(ARM64, 'arm64'), 'match');
  t.equal(nativeBinaryFits(elf(2, 183, 2), 'arm64'), 'match', 'e_machine is what counts');
  t.equal(nativeBinaryFits(X64, 'arm64'), 'foreign');
  t.equal(nativeBinaryFits(elf(1, 183), 'arm64'), 'foreign', '32-bit class with AArch64 machine');
  t.equal(nativeBinaryFits(elf(1, 40), 'armhf'), 'match');
  t.equal(nativeBinaryFits(elf(1, 40), 'arm64'), 'foreign');
  t.equal(nativeBinaryFits(ARM64, 'armhf'), 'foreign');
  t.equal(nativeBinaryFits(MACHO_ARM64, 'arm64'), 'foreign');
  // fuzz: random headers never crash, and "match" always means ELF/64/183
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(i % 24);
    for (let j = 0; j < b.length; j++) b[j] = (i * 7919 + j * 104729) & 0xff;
    if (i % 3 === 0 && b.length >= 20) b.writeUInt32BE(0x7f454c46, 0);
    if (nativeBinaryFits(b, 'arm64') === 'match') {
      t.equal(describeBinary(b).machine, 183);
      t.equal(describeBinary(b).bits, 64);
    }
  }
});

t.test('assertNativeTree: refuses foreign add-ons, listing every one, and changes nothing', async (t) => {
  const good = await tree({
    'a/build/Release/a.node': ARM64,
    'b/prebuilds/linux-arm64/b.node': ARM64,
    'b/lib/index.js': 'x',
  });
  t.teardown(() => rm(good, { recursive: true, force: true }));
  const ok = await assertNativeTree(good, 'arm64', 'test');
  t.same(ok.fitting, ['a/build/Release/a.node', 'b/prebuilds/linux-arm64/b.node']);
  t.same(ok.foreign, []);

  const bad = await tree({
    'a/build/Release/a.node': ARM64,
    'sockopt/prebuilds/linux-arm64/node.napi.node': MACHO_ARM64,
    'sockopt/build/Release/sockopt.node': X64,
    'w/prebuilds/win32-x64/w.node': Buffer.from('MZ'),
  });
  t.teardown(() => rm(bad, { recursive: true, force: true }));
  const err = await caught(assertNativeTree(bad, 'arm64', '--native-modules'));
  t.equal(err.code, 'IMAGE_ERR_NATIVE_FOREIGN');
  t.same(err.files, [
    'sockopt/build/Release/sockopt.node',
    'sockopt/prebuilds/linux-arm64/node.napi.node',
    'w/prebuilds/win32-x64/w.node',
  ]);
  t.match(err.message, /node\.napi\.node \(Mach-O\)/);
  t.match(err.message, /sockopt\.node \(ELF 64-bit x86-64\)/);
  t.ok(await stat(join(bad, 'sockopt/build/Release/sockopt.node')), 'the check deletes nothing');
  const scan = await scanNativeTree(bad, 'armhf');
  t.equal(scan.fitting.length, 0, 'arm64 does not fit an armhf card');
});

t.test('add-on discovery and gaps', async (t) => {
  t.equal(napiPlatformPackage('node-unix-socket', 'arm64'), 'node-unix-socket-linux-arm64-gnu');
  t.equal(napiPlatformPackage('x', 'armhf'), 'x-linux-arm-gnueabihf');
  t.equal(basenameOf('node_modules/@serialport/bindings-cpp'), '@serialport/bindings-cpp');
  t.equal(basenameOf('node_modules/a/node_modules/b'), 'b');
  t.same(withoutFallback(['node_modules/node-unix-socket', 'node_modules/sockopt']), [
    'node_modules/sockopt',
  ]);
  t.notOk(gypAddonReady([{ rel: 'prebuilds/linux-arm64/node.napi.node', fits: false }], 'arm64'));
  t.ok(gypAddonReady([{ rel: 'prebuilds/linux-arm64/x.armv8.glibc.node', fits: true }], 'arm64'));
  t.ok(gypAddonReady([{ rel: 'build/Release/x.node', fits: true }], 'arm64'));
  t.notOk(
    gypAddonReady([{ rel: 'prebuilds/android-arm64/x.node', fits: true }], 'arm64'),
    'node-gyp-build never loads an Android prebuild on Linux',
  );
  t.notOk(gypAddonReady([], 'arm64'));
  t.ok(otherPlatformPrebuild('b/prebuilds/android-arm64/b.armv8.node', 'arm64'));
  t.notOk(otherPlatformPrebuild('b/prebuilds/linux-arm64/b.armv8.glibc.node', 'arm64'));
  t.ok(otherPlatformPrebuild('b/prebuilds/linux-arm64/b.node', 'armhf'));
  t.notOk(otherPlatformPrebuild('b/build/Release/b.node', 'arm64'));
  t.notOk(otherPlatformPrebuild('prebuilds/x.node', 'arm64'), 'no platform dir');

  const dir = await tree({
    'node_modules/sockopt/package.json': '{"name":"sockopt"}',
    'node_modules/sockopt/binding.gyp': '{}',
    'node_modules/sockopt/prebuilds/linux-arm64/node.napi.node': MACHO_ARM64,
    'node_modules/@serialport/bindings-cpp/package.json': '{"name":"@serialport/bindings-cpp"}',
    'node_modules/@serialport/bindings-cpp/binding.gyp': '{}',
    'node_modules/@serialport/bindings-cpp/prebuilds/linux-arm64/b.armv8.glibc.node': ARM64,
    'node_modules/node-unix-socket/package.json':
      '{"name":"node-unix-socket","napi":{"name":"node-unix-socket"}}',
    'node_modules/node-unix-socket-linux-x64-gnu/package.json': '{"name":"node-unix-socket-linux-x64-gnu"}',
    'node_modules/node-unix-socket-linux-x64-gnu/n.node': X64,
    'node_modules/ws/package.json': '{"name":"ws"}',
    'node_modules/ws/node_modules/inner/package.json': '{"name":"inner"}',
    'node_modules/ws/node_modules/inner/binding.gyp': '{}',
    'node_modules/ws/node_modules/inner/build/Release/inner.node': ARM64,
    'node_modules/.bin/ignored': 'x',
  });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const nm = join(dir, 'node_modules');
  const found = await findAddonPackages(nm);
  t.same(
    found.map((a) => `${a.kind}:${a.dir}`),
    [
      'gyp:node_modules/@serialport/bindings-cpp',
      'napi:node_modules/node-unix-socket',
      'gyp:node_modules/sockopt',
      'gyp:node_modules/ws/node_modules/inner',
    ],
  );
  const gaps = await addonGaps(nm, 'arm64');
  t.same(gaps.ready, ['node_modules/@serialport/bindings-cpp', 'node_modules/ws/node_modules/inner']);
  t.same(gaps.missing, ['node_modules/node-unix-socket', 'node_modules/sockopt']);
  await mkdir(join(nm, 'node-unix-socket-linux-arm64-gnu'));
  await writeFile(join(nm, 'node-unix-socket-linux-arm64-gnu/n.node'), ARM64);
  t.same(
    (await addonGaps(nm, 'arm64')).missing,
    ['node_modules/sockopt'],
    'the platform package fills the napi gap',
  );
});

t.test('stageNativeModules (stand-in compiler and node-gyp)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-native-stage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  await mkdir(bin);
  for (const tool of ['aarch64-linux-gnu-g++', 'aarch64-linux-gnu-strip']) {
    await writeFile(join(bin, tool), '#!/bin/sh\nexit 0\n');
    await chmod(join(bin, tool), 0o755);
  }
  const headers = join(dir, 'headers');
  await mkdir(join(headers, 'include/node'), { recursive: true });
  await writeFile(join(headers, 'include/node/node_api.h'), '/* */\n');
  // node-gyp stand-in: records its arguments and environment, writes build/Release/<pkg>.node
  // with the header named by $FAKE_MACHINE, plus the junk a real build leaves.
  const gyp = join(dir, 'fake-node-gyp.mjs');
  await writeFile(
    gyp,
    `import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { basename } from 'node:path';
appendFileSync(process.env.FAKE_LOG, JSON.stringify({ argv: process.argv.slice(2), cxx: process.env.CXX, cwd: process.cwd() }) + '\\n');
if (process.env.FAKE_FAIL) { process.stderr.write('gyp ERR! boom\\n'); process.exit(1); }
const b = Buffer.alloc(64); b.writeUInt32BE(0x7f454c46, 0); b[4] = 2; b[5] = 1; b.writeUInt16LE(Number(process.env.FAKE_MACHINE), 18);
mkdirSync('build/Release/obj.target', { recursive: true });
writeFileSync('build/Makefile', 'x');
writeFileSync('build/Release/obj.target/' + basename(process.cwd()) + '.node', b);
writeFileSync('build/Release/' + basename(process.cwd()) + '.node', b);
`,
  );
  const log = join(dir, 'gyp.log');
  const oldPath = process.env['PATH'];
  process.env['PATH'] = `${bin}:${oldPath ?? ''}`;
  process.env['FAKE_LOG'] = log;
  process.env['FAKE_MACHINE'] = '183';
  t.teardown(() => {
    process.env['PATH'] = oldPath;
    for (const k of ['FAKE_LOG', 'FAKE_MACHINE', 'FAKE_FAIL']) delete process.env[k];
  });

  const fixture = async (name: string): Promise<string> => {
    const out = join(dir, name);
    const files: Record<string, Buffer | string> = {
      'node_modules/sockopt/package.json': '{"name":"sockopt"}',
      'node_modules/sockopt/binding.gyp': '{}',
      'node_modules/sockopt/prebuilds/linux-arm64/node.napi.node': MACHO_ARM64,
      'node_modules/sockopt/prebuilds/linux-x64/node.napi.node': X64,
      'node_modules/@serialport/bindings-cpp/package.json': '{"name":"@serialport/bindings-cpp"}',
      'node_modules/@serialport/bindings-cpp/binding.gyp': '{}',
      'node_modules/@serialport/bindings-cpp/prebuilds/linux-arm64/b.node': ARM64,
      'node_modules/@serialport/bindings-cpp/prebuilds/win32-x64/b.node': Buffer.from('MZ'),
      'node_modules/@serialport/bindings-cpp/prebuilds/android-arm64/b.node': ARM64,
      'node_modules/node-unix-socket/package.json':
        '{"name":"node-unix-socket","napi":{"name":"node-unix-socket"}}',
    };
    for (const [rel, body] of Object.entries(files)) {
      await mkdir(join(out, rel, '..'), { recursive: true });
      await writeFile(join(out, rel), body);
    }
    return out;
  };
  const opts = (out: string) => ({
    projectRoot: ROOT,
    outDir: out,
    arch: 'arm64' as const,
    skipInstall: true,
    nodeDir: headers,
    nodeGyp: gyp,
  });

  const out = await fixture('ok');
  const r = await stageNativeModules(opts(out));
  t.same(r.built, ['node_modules/sockopt'], 'only the add-on without a usable prebuild is built');
  t.same(r.prebuilt, ['node_modules/@serialport/bindings-cpp']);
  t.same(r.missing, ['node_modules/node-unix-socket'], 'left out, with a runtime fallback');
  t.same(r.pruned, [
    'node_modules/@serialport/bindings-cpp/prebuilds/android-arm64/b.node',
    'node_modules/@serialport/bindings-cpp/prebuilds/win32-x64/b.node',
    'node_modules/sockopt/prebuilds/linux-arm64/node.napi.node',
    'node_modules/sockopt/prebuilds/linux-x64/node.napi.node',
  ]);
  t.same(r.addons, [
    'node_modules/@serialport/bindings-cpp/prebuilds/linux-arm64/b.node',
    'node_modules/sockopt/build/Release/sockopt.node',
  ]);
  const call = JSON.parse((await readFile(log, 'utf8')).trim()) as {
    argv: string[];
    cxx: string;
    cwd: string;
  };
  t.same(call.argv, ['rebuild', '--arch=arm64', `--nodedir=${headers}`, '--jobs=1']);
  t.equal(call.cxx, 'aarch64-linux-gnu-g++');
  await t.rejects(stat(join(out, 'node_modules/sockopt/build/Makefile')), 'build junk removed');
  await t.rejects(stat(join(out, 'node_modules/sockopt/build/Release/obj.target')));
  t.same(JSON.parse(await readFile(join(out, 'native-stage.json'), 'utf8')), JSON.parse(JSON.stringify(r)));

  // the "compiler" makes an x86-64 file: pruned, then the gap stops the stage
  process.env['FAKE_MACHINE'] = '62';
  const wrong = await fixture('wrong');
  const e1 = await caught(stageNativeModules(opts(wrong)));
  t.equal(e1.code, 'IMAGE_ERR_NATIVE_MISSING');
  t.same(e1.files, ['node_modules/sockopt']);

  process.env['FAKE_FAIL'] = '1';
  const e2 = await caught(stageNativeModules(opts(await fixture('fail'))));
  t.equal(e2.code, 'IMAGE_ERR_NATIVE_BUILD');
  t.match(e2.message, /gyp ERR! boom/);
  delete process.env['FAKE_FAIL'];

  process.env['PATH'] = '/nonexistent';
  const e3 = await caught(stageNativeModules(opts(await fixture('nocc'))));
  t.equal(e3.code, 'IMAGE_ERR_TOOL_MISSING');
  t.match(e3.message, /apt-get install g\+\+-aarch64-linux-gnu/);
  process.env['PATH'] = `${bin}:${oldPath ?? ''}`;

  const e4 = await caught(stageNativeModules({ ...opts(join(ROOT, 'out/native')), skipInstall: false }));
  t.equal(e4.code, 'IMAGE_ERR_USAGE', 'never inside the project');
});

t.test('boot smoke: console watcher, qemu arguments, refusals', async (t) => {
  const transcript = [
    '[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]',
    '[    0.000000] Linux version 6.12.57+deb13-arm64',
    '[    2.1] Run /init as init process',
    '[    9.0] systemd[1]: systemd 257.9-1~deb13u1 running in system mode',
    '\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mqperiph-firstboot.service\x1b[0m - qperiph first boot.',
    '[  OK  ] Started qperiph.service - qperiph networked audio peripheral runtime.',
    '[FAILED] Failed to start qperiph.service - too late to matter',
  ];
  const phases: string[] = [];
  let p: BootProgress = { phase: 'firmware' };
  for (const l of transcript) {
    p = nextBootPhase(p, l);
    phases.push(p.phase);
  }
  t.same(phases, ['kernel', 'kernel', 'init', 'init', 'init', 'ready', 'ready'], 'ready is final');
  t.equal(
    nextBootPhase({ phase: 'init' }, '[FAILED] Failed to start qperiph.service - qperiph networked audio')
      .phase,
    'failed',
  );
  const panic = nextBootPhase(
    { phase: 'kernel' },
    '[ 3.2] Kernel panic - not syncing: VFS: Unable to mount root fs',
  );
  t.equal(panic.phase, 'failed');
  t.match(panic.reason, /Kernel panic/);
  t.equal(nextBootPhase({ phase: 'init' }, 'Started qperiph-firstboot.service - first boot').phase, 'init');

  t.equal(
    virtCmdline(
      'console=serial0,115200 console=tty1 root=PARTUUID=abc rootfstype=ext4 rootwait qperiph.slot=a\n',
    ),
    'root=PARTUUID=abc rootfstype=ext4 rootwait qperiph.slot=a console=ttyAMA0 panic=-1 systemd.show_status=1 systemd.journald.forward_to_console=1',
  );
  const args = qemuArgs({ kernel: 'k', initrd: 'i', disk: 'card.img', append: 'x' });
  t.ok(args.includes('file=card.img,if=virtio,format=raw,snapshot=on'), 'the card is never written');
  t.ok(args.includes('user,id=n0,restrict=on'), 'the guest reaches no network');
  t.same(args.slice(0, 2), ['-M', 'virt']);

  const bbb = loadBoardConfig(join(ROOT, 'board-configs/beaglebone-black.json'));
  const rpi = loadBoardConfig(join(ROOT, 'board-configs/rpi4-hifiberry-dacplusadc.json'));
  const e1 = await caught(bootSmoke({ outDir: tmpdir(), board: bbb, timeoutMs: 1000 }));
  t.equal(e1.code, 'IMAGE_ERR_BOOT_SMOKE');
  const empty = await mkdtemp(join(tmpdir(), 'qperiph-boot-empty-'));
  t.teardown(() => rm(empty, { recursive: true, force: true }));
  const e2 = await caught(bootSmoke({ outDir: empty, board: rpi, timeoutMs: 1000 }));
  t.equal(e2.code, 'IMAGE_ERR_BOOT_SMOKE');
  t.match(e2.message, /no built card/);
});
