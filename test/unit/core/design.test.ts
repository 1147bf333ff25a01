import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  DesignError,
  findPeripheral,
  loadDesign,
  parseDesign,
  parseDesignText,
} from '../../../bench/core/design.js';
import { ROOT } from '../../helpers/processes.js';

const good = {
  schemaVersion: 1,
  name: 'Bench',
  code: 'Bench01',
  peripherals: [
    {
      name: 'stage-io-1',
      partNumber: 'qperiph-virtual',
      controls: [{ name: 'audio.out.1.gain', value: -6 }, { name: 'gpio-in-1' }],
      streams: [{ direction: 'send', address: '127.0.0.1', port: 6100, channels: [1, 2] }],
    },
    { name: 'stage-io-2', partNumber: 'qperiph-virtual', address: '127.0.0.12', controlPort: 17000 },
  ],
};

function issues(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (err) {
    if (err instanceof DesignError) return [...err.issues];
    throw err;
  }
  throw new Error('no error');
}

t.test('a good design: defaults applied, deep-frozen', async (t) => {
  const d = parseDesign(structuredClone(good));
  t.equal(d.peripherals[0]!.controlPort, 1700);
  t.equal(d.peripherals[0]!.httpsPort, 8443);
  t.equal(d.peripherals[0]!.streams[0]!.format, 'qlan');
  t.same(d.peripherals[1]!.controls, null, 'no list = every control');
  t.same(d.peripherals[1]!.streams, []);
  t.ok(Object.isFrozen(d) && Object.isFrozen(d.peripherals[0]!.controls![0]), 'frozen all the way down');
  t.throws(() => {
    (d.peripherals as unknown as unknown[]).push({});
  });
  t.equal(findPeripheral(d, 'STAGE-IO-2')?.address, '127.0.0.12', 'lookup ignores case');
  t.equal(findPeripheral(d, 'nope'), undefined);
});

t.test('the shipped example design parses', async (t) => {
  const d = loadDesign(path.join(ROOT, 'bench', 'core', 'designs', 'example.json'));
  t.ok(d.peripherals.length >= 1);
});

t.test('bad designs: typed error, every problem with a JSON pointer', async (t) => {
  const bad = structuredClone(good) as Record<string, unknown> & {
    peripherals: Array<Record<string, unknown>>;
  };
  bad['code'] = 'has space';
  bad['extra'] = 1;
  bad.peripherals[0]!['name'] = '-bad-';
  delete bad.peripherals[1]!['partNumber'];
  (bad.peripherals[0]!['streams'] as Array<Record<string, unknown>>)[0]!['port'] = 80;
  const found = issues(() => parseDesign(bad));
  const paths = found.map((i) => i.path).sort();
  t.same(
    paths,
    [
      '/code',
      '/extra',
      '/peripherals/0/name',
      '/peripherals/0/streams/0/port',
      '/peripherals/1/partNumber',
    ].sort(),
  );

  const dup = structuredClone(good);
  dup.peripherals[1]!.name = 'Stage-IO-1';
  dup.peripherals[0]!.controls!.push({ name: 'AUDIO.OUT.1.GAIN', value: 0 });
  dup.peripherals[0]!.streams![0]!.channels = [1, 1];
  t.same(
    issues(() => parseDesign(dup))
      .map((i) => i.path)
      .sort(),
    ['/peripherals/0/controls/2/name', '/peripherals/0/streams/0/channels', '/peripherals/1/name'],
    'rules a schema cannot express',
  );
  t.same(issues(() => parseDesign(null)).length, 1);
  t.same(issues(() => parseDesign({ ...good, schemaVersion: 2 }))[0]!.path, '/schemaVersion');
});

t.test('syntax and read errors', async (t) => {
  t.throws(() => parseDesignText('{"name": ', 'x.json'), { code: 'CORE_ERR_DESIGN_JSON' });
  t.throws(() => loadDesign('/nonexistent/design.json'), { code: 'CORE_ERR_DESIGN_READ' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-design-'));
  const f = path.join(dir, 'd.json');
  writeFileSync(f, JSON.stringify({ ...good, peripherals: 'no' }));
  t.throws(() => loadDesign(f), { code: 'CORE_ERR_DESIGN_INVALID' });
});

t.test('fuzz: random mutations never throw anything but DesignError', async (t) => {
  let seed = 7;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const values: unknown[] = [null, 0, -1, 1e9, '', 'x', true, [], {}, [1], { a: 1 }];
  for (let i = 0; i < 500; i++) {
    const d = structuredClone(good) as unknown as Record<string, unknown>;
    const target =
      rnd() < 0.5 ? d : ((d['peripherals'] as Array<Record<string, unknown>>)[0] as Record<string, unknown>);
    const keys = Object.keys(target);
    target[keys[Math.floor(rnd() * keys.length)]!] = values[Math.floor(rnd() * values.length)];
    try {
      parseDesign(d);
    } catch (err) {
      if (!(err instanceof DesignError)) t.fail(`unexpected ${String(err)}`);
    }
  }
  t.pass('500 mutations');
});

t.test('audioPeer: absent = none, defaults filled, AES67 channel limit', async (t) => {
  t.equal(parseDesign(structuredClone(good)).peripherals[0]!.audioPeer, null, 'no audioPeer = no Core audio');
  const withPeer = structuredClone(good) as typeof good & { peripherals: Array<Record<string, unknown>> };
  withPeer.peripherals[0]!.audioPeer = {};
  withPeer.peripherals[1]!.audioPeer = { format: 'aes67', channels: 8, toneHz: 1000 };
  const d = parseDesign(withPeer);
  t.same(d.peripherals[0]!.audioPeer, { format: 'qlan', channels: 2, toneHz: 440 });
  t.same(d.peripherals[1]!.audioPeer, { format: 'aes67', channels: 8, toneHz: 1000 });
  t.ok(Object.isFrozen(d.peripherals[0]!.audioPeer), 'frozen');

  const tooMany = structuredClone(withPeer);
  tooMany.peripherals[1]!.audioPeer = { format: 'aes67', channels: 9 };
  t.same(
    issues(() => parseDesign(tooMany)).map((i) => i.path),
    ['/peripherals/1/audioPeer/channels'],
    'AES67 carries at most 8 channels per stream',
  );
  const qlan16 = structuredClone(withPeer);
  qlan16.peripherals[1]!.audioPeer = { format: 'qlan', channels: 16 };
  t.equal(parseDesign(qlan16).peripherals[1]!.audioPeer!.channels, 16, 'Q-LAN carries 16');

  const bad = structuredClone(withPeer);
  bad.peripherals[0]!.audioPeer = { format: 'mp3', channels: 0, toneHz: 5, extra: true };
  const paths = issues(() => parseDesign(bad)).map((i) => i.path);
  t.ok(paths.length >= 3 && paths.every((p) => p.startsWith('/peripherals/0/audioPeer')), paths.join(' '));
});
