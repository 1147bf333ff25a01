/**
 * Benchmark: the SD-card image build. Prints figures; asserts nothing.
 *
 *   npm run bench:image                          # rpi4, synthetic base, 2 full builds + 1 incremental
 *   npm run bench:image -- --board beaglebone-black --base /path/base.tar --runs 1
 *   npm run bench:image -- --native-modules /tmp/nm-arm64/node_modules   # the card's tree (image native-modules)
 *
 * Without --base it uses the synthetic base (a tiny stand-in root file system),
 * so the figures are the pipeline's own cost: our runtime and production
 * node_modules, genimage, mkdosfs/mtools, mke2fs -d, the change-time clamp and
 * the card assembly. "Incremental" = a rebuild after a change to the runtime
 * (one file in dist/firmware of a private copy of the project), with the
 * same base: the whole pipeline runs again, there is no cache.
 */
import { cp, mkdtemp, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { createJsonLogger } from '../../firmware/log/logger.js';
import { buildImage, type BuildResult } from '../../scripts/image/build.js';
import { imageProfile } from '../../scripts/image/layout.js';
import { productionPackages } from '../../scripts/image/runtime.js';
import { makeSyntheticBase } from '../../scripts/image/synthetic-base.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    board: { type: 'string', default: 'rpi4-hifiberry-dacplusadc' },
    base: { type: 'string' },
    runs: { type: 'string', default: '2' },
    'native-modules': { type: 'string' },
  },
});

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const board = loadBoardConfig(path.join(ROOT, 'board-configs', `${values.board}.json`));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qperiph-bench-image-'));
  try {
    // A private copy of the project, so the incremental change touches nothing real.
    const proj = path.join(dir, 'project');
    const pkgs = await productionPackages(ROOT);
    for (const p of [
      'package.json',
      'board-configs',
      'dist/firmware',
      'dist/scripts/image',
      'scripts/systemd',
      'scripts/image/device',
      'firmware/peripheral-manager/ui',
    ]) {
      await cp(path.join(ROOT, p), path.join(proj, p), { recursive: true, verbatimSymlinks: true });
    }
    for (const p of pkgs)
      await cp(p, path.join(proj, path.relative(ROOT, p)), { recursive: true, verbatimSymlinks: true });
    const packages = pkgs.map((p) => path.join(proj, path.relative(ROOT, p)));
    let base = values.base;
    if (!base) {
      base = path.join(dir, 'base.tar');
      await makeSyntheticBase(base, imageProfile(board).kind);
    }
    const baseKind = values.base ? `base ${values.base} (${mib((await stat(base)).size)})` : 'synthetic base';
    const nmKind = values['native-modules']
      ? `node_modules ${values['native-modules']}`
      : `${packages.length} host production packages (filtered)`;
    process.stderr.write(`image bench: ${board.id}, ${baseKind}, ${nmKind}\n`);
    const progress = createJsonLogger({
      write: (l) => process.stderr.write(`  ${(JSON.parse(l) as { step?: string }).step ?? 'done'} `),
    });
    const build = async (label: string): Promise<{ ms: number; r: BuildResult }> => {
      process.stderr.write(`${label}:`);
      const t0 = performance.now();
      const r = await buildImage({
        projectRoot: proj,
        board,
        baseTarball: base as string,
        outDir: path.join(dir, 'out'),
        sourceDateEpoch: 1_700_000_000,
        version: '0.0.0-bench',
        packages,
        nativeModules: values['native-modules'] ? path.resolve(values['native-modules']) : undefined,
        logger: progress,
      });
      const ms = performance.now() - t0;
      process.stderr.write(` ${(ms / 1000).toFixed(1)} s\n`);
      return { ms, r };
    };
    const full: number[] = [];
    let last: BuildResult | null = null;
    for (let i = 0; i < Number(values.runs); i++) {
      const b = await build(`full build ${i + 1}/${values.runs}`);
      full.push(b.ms);
      last = b.r;
    }
    await appendFile(path.join(proj, 'dist/firmware/cli.js'), '\n// bench: a runtime change\n');
    await writeFile(path.join(proj, 'dist/firmware/bench-marker.js'), 'export const changed = true;\n');
    const inc = await build('incremental (runtime changed)');
    const r = last as BuildResult;
    const card = r.files.find((f) => f.name.endsWith('.img'));
    const sys = r.files.find((f) => f.name === 'system.ext4');
    console.log(`board                  ${board.id} (${r.layout}), ${baseKind}; ${nmKind}`);
    console.log(`full build             ${full.map((m) => `${(m / 1000).toFixed(1)} s`).join(', ')}`);
    console.log(
      `incremental rebuild    ${(inc.ms / 1000).toFixed(1)} s (same base, one runtime file changed)`,
    );
    console.log(
      `steps of the last full ${Object.entries(r.stepsMs)
        .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
        .join(', ')}`,
    );
    console.log(
      `card image             ${mib(card?.size ?? 0)}; system.ext4 ${mib(sys?.size ?? 0)} (x2 slots)`,
    );
    console.log(
      `runtime in the image   ${r.runtime.files} files, ${mib(r.runtime.bytes)}; ${r.runtime.droppedNative.length} host/foreign add-ons left out; need an arm build: ${r.runtime.missingNative.join(', ') || 'none'}`,
    );
    console.log(
      `reproducible           ${inc.r.files.find((f) => f.name === 'boot.vfat')?.sha256 === r.files.find((f) => f.name === 'boot.vfat')?.sha256 ? 'boot.vfat unchanged by a runtime change' : 'boot.vfat changed'}`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
