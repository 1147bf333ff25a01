/**
 * `qperiph image build|base|synthetic-base|inspect`: the SD-card image build
 * from the command line. Exit codes: 0 ok, 1 build failure, 2 usage.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { createJsonLogger } from '../../firmware/log/logger.js';
import { findProjectRoot } from '../../firmware/paths.js';
import { hostMirror, mmdebstrapArgs } from './base.js';
import { ensureForeignArch } from './foreign-arch.js';
import { buildImage } from './build.js';
import { ImageError } from './errors.js';
import { imageProfile } from './layout.js';
import { makeSyntheticBase } from './synthetic-base.js';
import { stageNativeModules } from './native-stage.js';
import { bootSmoke } from './boot-smoke.js';

export const IMAGE_HELP = `Usage: qperiph image <command> [options]

Commands:
  build           build the SD-card image, its file-system images, manifest.json
                  and (with a signing key) the matching signed update bundle
  base            make the Debian trixie base root tarball with mmdebstrap
                  (arm64/armhf through qemu-user + binfmt; slow: run once, niced)
  synthetic-base  write a tiny stand-in base tarball (CI, benchmarks; does not boot)
  native-modules  install the production node_modules for the card's CPU into a
                  scratch dir, cross-compile add-ons without a usable prebuild,
                  check every .node (ELF e_machine); pass <out>/node_modules to
                  'build --native-modules'
  boot            boot a built image in qemu-system-aarch64 (virt) and wait for
                  the runtime's READY=1 (opt-in smoke test, slow under TCG)
  inspect         print an image's partition table and boot files

build options:
  --board ID|FILE    board config (board-configs/<ID>.json)       (required)
  --base FILE        base root tarball (from 'base', or prebuilt)  (required)
  --out DIR          output directory (default out/image/<board>)
  --version V        image version (default: package.json version)
  --anchors FILE     PEM trust anchor(s) for update bundles (repeatable)
  --sign-key FILE    PKCS#8 PEM key of the bundle signer
  --sign-chain FILE  PEM chain of the signer, leaf first
  --epoch N          SOURCE_DATE_EPOCH (default: $SOURCE_DATE_EPOCH, else 2024-01-01)
  --system-mib N     system partition size (default: content + 25 % + 32 MiB)
  --native-modules D node_modules built for the card's CPU (from 'native-modules'):
                     the image's node_modules instead of the host's; refused if any
                     .node in it is not an ELF for the card
  --keep-work        keep the scratch tree under <out>/.work

base options:
  --board ID|FILE  --out FILE  [--mirror URL (default: the host's apt sources)]  [--suite trixie]
native-modules options:
  --board ID|FILE  --out DIR (scratch, outside the project)  [--nodedir DIR (Node headers;
  default: next to node, else /usr)]  [--skip-install (reuse <out>/node_modules)]
boot options:
  --board ID|FILE  --out DIR (the build's output dir: system.ext4, boot.vfat)  [--timeout S (600)]
synthetic-base options:
  --board ID|FILE  --out FILE
inspect:
  qperiph image inspect IMAGE
`;

const exec = promisify(execFile);

interface SfdiskPartition {
  start: number;
  size: number;
  type: string;
  name?: string;
  uuid?: string;
}

/** Partition table (sfdisk --json) and the files of every FAT partition (mtools at an offset). */
export async function inspectImage(
  img: string,
): Promise<{ label: string; partitions: Array<SfdiskPartition & { files?: string[] }> }> {
  const env = {
    ...process.env,
    PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`,
    MTOOLS_SKIP_CHECK: '1',
  };
  const { stdout } = await exec('sfdisk', ['--json', img], { env });
  const table = (JSON.parse(stdout) as { partitiontable: { label: string; partitions: SfdiskPartition[] } })
    .partitiontable;
  const out: Array<SfdiskPartition & { files?: string[] }> = [];
  for (const p of table.partitions) {
    const fat = /^(c|b|e|EBD0A0A2-B9E5-4433-87C0-68B6B72699C7)$/i.test(p.type);
    if (!fat) {
      out.push(p);
      continue;
    }
    const r = await exec('mdir', ['-b', '-i', `${img}@@${p.start * 512}`, '::'], { env }).catch(() => ({
      stdout: '',
    }));
    out.push({
      ...p,
      files: r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/^::\//, '')),
    });
  }
  return { label: table.label, partitions: out };
}

function boardFile(root: string, v: string): string {
  return v.endsWith('.json') || v.includes('/') ? resolve(v) : join(root, 'board-configs', `${v}.json`);
}

function spawnLogged(cmd: string, args: string[]): Promise<number> {
  return new Promise((res) => {
    const c = spawn(cmd, args, { stdio: 'inherit' });
    c.on('error', (err) => {
      process.stderr.write(`${cmd}: ${err.message}\n`);
      res(127);
    });
    c.on('exit', (code) => res(code ?? 1));
  });
}

/** $SOURCE_DATE_EPOCH, else a fixed date so unconfigured builds are still reproducible. */
function defaultEpoch(env: NodeJS.ProcessEnv): number {
  const v = Number(env['SOURCE_DATE_EPOCH']);
  if (Number.isInteger(v) && v > 0) return v;
  return 1_704_067_200; // 2024-01-01T00:00:00Z
}

export async function runImageCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(IMAGE_HELP);
    return cmd ? 0 : 2;
  }
  let root: string;
  try {
    root = findProjectRoot(env);
  } catch {
    root = process.cwd();
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        board: { type: 'string' },
        base: { type: 'string' },
        out: { type: 'string' },
        version: { type: 'string' },
        anchors: { type: 'string', multiple: true },
        'sign-key': { type: 'string' },
        'sign-chain': { type: 'string' },
        epoch: { type: 'string' },
        'native-modules': { type: 'string' },
        'system-mib': { type: 'string' },
        'keep-work': { type: 'boolean' },
        mirror: { type: 'string' },
        nodedir: { type: 'string' },
        'skip-install': { type: 'boolean' },
        timeout: { type: 'string' },
        suite: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(IMAGE_HELP);
      return 0;
    }
    const need = (k: 'board' | 'base' | 'out'): string => {
      const v = values[k];
      if (!v) throw new ImageError('IMAGE_ERR_USAGE', `--${k} is required`);
      return v;
    };
    if (cmd === 'inspect') {
      const img = positionals[0];
      if (!img) throw new ImageError('IMAGE_ERR_USAGE', 'inspect needs an IMAGE');
      process.stdout.write(`${JSON.stringify(await inspectImage(img), null, 2)}\n`);
      return 0;
    }
    const board = loadBoardConfig(boardFile(root, need('board')));
    const profile = imageProfile(board);
    if (cmd === 'synthetic-base') {
      await makeSyntheticBase(resolve(need('out')), profile.kind);
      return 0;
    }
    if (cmd === 'native-modules') {
      const r = await stageNativeModules({
        projectRoot: root,
        outDir: resolve(need('out')),
        arch: profile.arch,
        skipInstall: values['skip-install'] ?? false,
        nodeDir: values.nodedir ? resolve(values.nodedir) : undefined,
        logger: createJsonLogger(),
      });
      process.stdout.write(`${JSON.stringify({ event: 'native_stage_result', ...r })}\n`);
      return 0;
    }
    if (cmd === 'boot') {
      const r = await bootSmoke({
        outDir: resolve(need('out')),
        board,
        timeoutMs: Number(values.timeout ?? '600') * 1000,
        logger: createJsonLogger(),
      });
      process.stdout.write(`${JSON.stringify({ event: 'boot_result', ...r })}\n`);
      return r.ready ? 0 : 1;
    }
    if (cmd === 'base') {
      const mirror = values.mirror ?? (await hostMirror());
      // qemu-user through binfmt_misc for a foreign card CPU: set up here where the machine allows.
      await ensureForeignArch(profile.arch, (m) => process.stderr.write(`${m}\n`));
      const args = mmdebstrapArgs(profile, mirror, resolve(need('out')), values.suite ?? 'trixie');
      process.stderr.write(`nice -n 19 mmdebstrap ${args.join(' ')}\n`);
      return await spawnLogged('nice', ['-n', '19', 'mmdebstrap', ...args]);
    }
    if (cmd === 'build') {
      if ((values['sign-key'] === undefined) !== (values['sign-chain'] === undefined))
        throw new ImageError('IMAGE_ERR_USAGE', '--sign-key and --sign-chain go together');
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
      const base = resolve(need('base'));
      if (!existsSync(base))
        throw new ImageError(
          'IMAGE_ERR_BASE',
          `${base} not found (make one with 'qperiph image base' or 'synthetic-base')`,
        );
      const r = await buildImage({
        projectRoot: root,
        board,
        baseTarball: base,
        outDir: resolve(values.out ?? join(root, 'out/image', board.id)),
        sourceDateEpoch: values.epoch ? Number(values.epoch) : defaultEpoch(env),
        version: values.version ?? pkg.version,
        sizes: values['system-mib'] ? { systemMiB: Number(values['system-mib']) } : {},
        anchorsPem: values.anchors ?? [],
        signing:
          values['sign-key'] && values['sign-chain']
            ? { keyPem: values['sign-key'], chainPem: values['sign-chain'] }
            : undefined,
        keepWork: values['keep-work'] ?? false,
        nativeModules: values['native-modules'] ? resolve(values['native-modules']) : undefined,
        logger: createJsonLogger(),
      });
      process.stdout.write(
        `${JSON.stringify({ event: 'image_result', card: r.card, bundle: r.bundle, files: r.files, missingNative: r.runtime.missingNative })}\n`,
      );
      return 0;
    }
    throw new ImageError('IMAGE_ERR_USAGE', `unknown command '${cmd}'`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    process.stderr.write(`qperiph image: ${(err as Error).message}\n`);
    return code === 'IMAGE_ERR_USAGE' ||
      code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      code === 'IMAGE_ERR_BOARD'
      ? 2
      : 1;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runImageCli(process.argv.slice(2)).then((c) => (process.exitCode = c));
}
