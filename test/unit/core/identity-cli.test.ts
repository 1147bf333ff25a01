import { mkdtempSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCoreCli } from '../../../bench/core/cli.js';
import { openCoreIdentity, PinStore } from '../../../bench/core/core-identity.js';

const FP_A = Array.from({ length: 32 }, () => 'AA').join(':');
const FP_B = Array.from({ length: 32 }, () => 'BB').join(':');

t.test('Core identity: created once (key 0600), the same on reopen; a readable key is refused', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-coreid-'));
  const a = await openCoreIdentity(dir, 'qcore-a');
  t.equal(statSync(path.join(dir, 'core-key.pem')).mode & 0o777, 0o600);
  t.match(a.fingerprint256, /^[0-9A-F:]{95}$/);
  const b = await openCoreIdentity(dir, 'qcore-b');
  t.equal(b.fingerprint256, a.fingerprint256, 'a pair sharing the directory is one Core to peripherals');
  chmodSync(path.join(dir, 'core-key.pem'), 0o644);
  await t.rejects(openCoreIdentity(dir, 'qcore-a'), { code: 'CORE_ERR_IDENTITY' });
});

t.test('pins: first use pins, a match passes, a changed certificate is refused; persisted', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-pins-'));
  const pins = await PinStore.open(dir);
  t.equal(pins.check('io-1', FP_A), 'new');
  await pins.pin('IO-1', FP_A);
  t.equal(pins.check('io-1', FP_A), 'match');
  t.throws(() => pins.check('io-1', FP_B), { code: 'CORE_ERR_PIN_MISMATCH' });
  const again = await PinStore.open(dir);
  t.equal(again.get('io-1'), FP_A, 'survives a restart');
  await again.forget('io-1');
  t.equal((await PinStore.open(dir)).get('io-1'), null);
  writeFileSync(path.join(dir, 'pins.json'), '{not json');
  t.same((await PinStore.open(dir)).all(), {}, 'a damaged pin file pins nothing');
});

t.test('qperiph core: --help, bad usage and a bad design exit before starting anything', async (t) => {
  const out: string[] = [];
  const err: string[] = [];
  const io = { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) };
  t.equal(await runCoreCli(['--help'], {}, io), 0);
  t.match(out.join(''), /--design FILE/);
  t.equal(await runCoreCli(['--bogus'], {}, io), 2);
  t.equal(await runCoreCli(['--role', 'tertiary'], {}, io), 2);
  t.equal(await runCoreCli(['--qrc-port', '70000'], {}, io), 2);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-corecli-'));
  const f = path.join(dir, 'd.json');
  writeFileSync(f, JSON.stringify({ schemaVersion: 1, name: 'x', code: 'bad code', peripherals: [] }));
  t.equal(await runCoreCli(['--design', f], {}, io), 2);
  t.match(err.join(''), /\/code/);
});
