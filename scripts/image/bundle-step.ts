/**
 * Step 8: the update bundle made from the very file-system images on the card
 * (boot.vfat as the `boot` payload, system.ext4 as the `rootfs` payload), so
 * the card and the update cannot drift. Signing uses firmware/update's writer.
 */
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BoardConfig } from '../../firmware/config/board-types.js';
import { writeBundle } from '../../firmware/update/bundle.js';
import { pemToDers } from '../../firmware/update/pki.js';
import { sha256File } from './build.js';

export interface SigningInput {
  /** PKCS#8 PEM private key of the signer. */
  keyPem: string;
  /** PEM certificate chain, leaf first (the anchor may be left out). */
  chainPem: string;
  securityVersion?: number;
  installOrder?: string;
}

export interface BundleResult {
  status: 'signed' | 'not-available';
  reason?: string;
  file?: string;
  sha256?: string;
}

export async function emitBundle(o: {
  outDir: string;
  board: Readonly<BoardConfig>;
  version: string;
  sourceDateEpoch: number;
  bootImage: string;
  systemImage: string;
  signing: SigningInput | undefined;
}): Promise<BundleResult> {
  if (!o.signing) {
    return {
      status: 'not-available',
      reason: 'bundle signing not available: no signing key given (--sign-key/--sign-chain)',
    };
  }
  const key = createPrivateKey(await readFile(o.signing.keyPem));
  const chain = pemToDers(await readFile(o.signing.chainPem, 'utf8'));
  const file = join(o.outDir, `qperiph-${o.board.id}-${o.version}.qpb`);
  await writeBundle(file, {
    product: 'qperiph',
    compatible: [o.board.id],
    version: o.version,
    securityVersion: o.signing.securityVersion ?? 1,
    installOrder: o.signing.installOrder ?? `image-${o.board.id}-${o.version}`,
    buildTime: new Date(o.sourceDateEpoch * 1000).toISOString(),
    payloads: [
      { name: 'boot.vfat', type: 'boot', path: o.bootImage },
      { name: 'system.ext4', type: 'rootfs', path: o.systemImage },
    ],
    key,
    chain,
  });
  return { status: 'signed', file, sha256: await sha256File(file) };
}
