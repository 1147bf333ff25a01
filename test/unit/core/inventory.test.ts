import t from 'tap';
import { parseDesign } from '../../../bench/core/design.js';
import { Inventory, type PeripheralStatus } from '../../../bench/core/inventory.js';
import { PeripheralTracker } from '../../../bench/core/qdp-core.js';
import { encodeQdp, decodeQdp } from '../../../firmware/qdp/qdp-codec.js';
import type { QdpPacket } from '../../../firmware/qdp/qdp-types.js';

const design = parseDesign({
  schemaVersion: 1,
  name: 'Bench',
  code: 'Bench01',
  peripherals: [
    { name: 'io-1', partNumber: 'qperiph-virtual' },
    { name: 'io-2', partNumber: 'qperiph-virtual' },
  ],
});

t.test(
  'inventory: design entries, heard, link states, meters, changes only when something moved',
  async (t) => {
    const inv = new Inventory(design, 0);
    const seen: Array<Readonly<PeripheralStatus>> = [];
    inv.onChange((s) => seen.push(s));
    t.same(
      inv.list().map((p) => [p.name, p.inDesign, p.online, p.link]),
      [
        ['io-1', true, false, 'idle'],
        ['io-2', true, false, 'idle'],
      ],
    );
    inv.heard(
      { name: 'IO-1', partNumber: 'qperiph-virtual', address: '127.0.0.5', secureComm: 'disabled' },
      100,
    );
    t.match(inv.get('io-1'), { online: true, address: '127.0.0.5', secure: false, lastHeardMs: 100 });
    const n = seen.length;
    inv.heard(
      { name: 'io-1', partNumber: 'qperiph-virtual', address: '127.0.0.5', secureComm: 'disabled' },
      100,
    );
    t.equal(seen.length, n, 'same facts: no change event');

    inv.heard({ name: 'stranger', partNumber: 'other', address: '127.0.0.9', secureComm: null }, 200);
    t.match(inv.get('stranger'), { inDesign: false, partNumber: 'other' });
    t.equal(inv.list().at(-1)!.name, 'stranger', 'design peripherals first');

    inv.link('io-1', 'connecting', '127.0.0.5', 300);
    inv.link('io-1', 'connected', '127.0.0.5', 400);
    inv.update('io-1', { version: '0.1.0', secure: true, owned: true, fingerprint: 'AB' }, 400);
    t.match(inv.get('io-1'), {
      link: 'connected',
      version: '0.1.0',
      secure: true,
      owned: true,
      changedAtMs: 400,
    });
    inv.meters('io-1', { 'audio.in.1.peak': -20 }, 500);
    inv.meters('io-1', { 'audio.in.2.peak': -30 }, 600);
    t.same(inv.get('io-1')!.meters, { 'audio.in.1.peak': -20, 'audio.in.2.peak': -30 });
    inv.link('io-1', 'pin-mismatch', 'cert changed', 700);
    t.match(inv.get('io-1'), { link: 'pin-mismatch', owned: false, linkDetail: 'cert changed' });
    inv.lost('io-1', 800);
    t.equal(inv.get('io-1')!.online, false);
    inv.link('nope', 'connected', null, 900);
    t.equal(inv.get('nope'), null, 'unknown names change nothing');
    const last = seen.at(-1)!;
    inv.meters('io-1', { 'audio.in.1.peak': -1 }, 1000);
    t.equal(last.meters['audio.in.1.peak'], -20, 'listeners get snapshots, not live objects');
  },
);

function packet(
  name: string,
  type = 'ioframe',
  extra: Partial<NonNullable<QdpPacket['device']>> = {},
): QdpPacket {
  // Through the real codec, as the shell does.
  return decodeQdp(
    encodeQdp({
      device: {
        name,
        type,
        partNumber: 'qperiph-virtual',
        lanAIp: '127.0.0.5',
        secureComm: 'disabled',
        ...extra,
      },
      queryRefs: [],
    }),
  );
}

t.test('peripheral tracker: discovered, changed, lost after silence; Cores ignored', async (t) => {
  const tr = new PeripheralTracker(5000);
  t.match(tr.observe(packet('io-1'), '127.0.0.5', 0), [{ event: 'peripheral_discovered' }]);
  t.same(tr.observe(packet('io-1'), '127.0.0.5', 1000), [], 'same again: nothing');
  t.match(tr.observe(packet('io-1', 'ioframe', { secureComm: 'enabled' }), '127.0.0.5', 2000), [
    { event: 'peripheral_changed', changed: ['secureComm'] },
  ]);
  t.same(tr.observe(packet('core-1', 'core'), '127.0.0.1', 2000), [], 'Cores are not peripherals');
  t.same(tr.expire(7000), [], 'heard at 2000: not silent for more than 5 s yet');
  t.match(tr.expire(7001), [{ event: 'peripheral_lost', peripheral: { name: 'io-1' } }]);
  t.same(tr.list(), []);
  t.match(tr.observe(packet('io-2', 'ioframe', { lanAIp: '' }), '127.0.0.7', 0), [
    { peripheral: { address: '127.0.0.7' } },
  ]);
});
