/**
 * The bundle each fault pushes: a good signed bundle, one with a flipped
 * payload byte (corrupt), one signed by a key the devices do not trust
 * (foreign-key), one with a lower security version (downgrade), and one whose
 * runtime fails at start (bad-health: the device must roll back).
 */
import { join } from 'node:path';
import {
  buildRuntimeTree,
  corruptBundle,
  createDevSigner,
  signAppBundle,
  bundleDigest,
  type DevSigner,
} from '../../core/signer.js';
import type { FaultKind } from '../scenario.js';

export interface StepBundle {
  path: string;
  version: string;
  securityVersion: number;
  manifestDigest: string;
  /** What a device should end up running if the step goes as designed ('unchanged' = what it ran before). */
  expect: 'new-version' | 'unchanged' | 'either';
}

export interface BundleFactoryOptions {
  projectRoot: string;
  workDir: string;
  signer: DevSigner;
  baseVersion: string;
}

export class BundleFactory {
  private foreign: DevSigner | null = null;
  private good = new Map<string, string>();

  constructor(private readonly o: BundleFactoryOptions) {}

  private async tree(version: string, crash = false): Promise<string> {
    const key = `${version}${crash ? '-crash' : ''}`;
    const have = this.good.get(key);
    if (have) return have;
    const dir = join(this.o.workDir, 'trees', key);
    await buildRuntimeTree({ projectRoot: this.o.projectRoot, out: dir, version, crashAtStart: crash });
    this.good.set(key, dir);
    return dir;
  }

  /** The bundle for step `index` (0-based) with this fault; good steps raise the security version to index+1. */
  async forStep(index: number, fault: FaultKind): Promise<StepBundle> {
    const version = `${this.o.baseVersion}-drill.${index + 1}`;
    const sv = index + 1;
    const out = join(this.o.workDir, 'bundles', `step-${index + 1}-${fault}.qpb`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(this.o.workDir, 'bundles'), { recursive: true });
    const sign = async (
      tree: string,
      v: string,
      s: number,
      signer = this.o.signer,
      file = out,
    ): Promise<string> =>
      (await signAppBundle({ tree, out: file, version: v, securityVersion: s, signer })).path;
    switch (fault) {
      case 'corrupt': {
        const good = await sign(await this.tree(version), version, sv, this.o.signer, `${out}.good`);
        await corruptBundle(good, out);
        return this.done(out, version, sv, 'unchanged');
      }
      case 'foreign-key': {
        this.foreign ??= await createDevSigner({ rootName: 'someone else' });
        await sign(await this.tree(version), version, sv, this.foreign);
        return this.done(out, version, sv, 'unchanged');
      }
      case 'downgrade': {
        const v = `0.0.1-drill-downgrade.${index + 1}`;
        await sign(await this.tree(v), v, 0);
        return this.done(out, v, 0, 'unchanged');
      }
      case 'bad-health': {
        await sign(await this.tree(version, true), version, sv);
        return this.done(out, version, sv, 'unchanged');
      }
      case 'power-cut':
        await sign(await this.tree(version), version, sv);
        return this.done(out, version, sv, 'either');
      default:
        await sign(await this.tree(version), version, sv);
        return this.done(out, version, sv, 'new-version');
    }
  }

  private async done(
    path: string,
    version: string,
    sv: number,
    expect: StepBundle['expect'],
  ): Promise<StepBundle> {
    return { path, version, securityVersion: sv, manifestDigest: await bundleDigest(path), expect };
  }
}
