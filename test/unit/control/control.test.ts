import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { defaultDeviceState, type DeviceState } from '../../../firmware/config/state-store.js';
import { ChangeGroup } from '../../../firmware/control/change-groups.js';
import {
  ControlFrameError,
  encodeFrame,
  firstInvalidUtf8,
  FrameDecoder,
  type FrameEvent,
} from '../../../firmware/control/frame-codec.js';
import { parseRpc, RPC_ERR } from '../../../firmware/control/jsonrpc.js';
import { ControlRegistry, ControlRegistryError } from '../../../firmware/control/registry.js';
import { decideConnection, normaliseFingerprint } from '../../../firmware/control/trust.js';

const frames = (evs: FrameEvent[]): string[] => evs.flatMap((e) => (e.kind === 'frame' ? [e.text] : []));
const errors = (evs: FrameEvent[]): string[] =>
  evs.flatMap((e) => (e.kind === 'error' ? [e.error.code] : []));

t.test('framing: whole, byte by byte, every split point', async (t) => {
  const msgs = [
    { jsonrpc: '2.0', id: 1, method: 'Status.Get' },
    { jsonrpc: '2.0', method: 'NoOp', params: { text: 'Grüße – ✓ 🎛 \u0000 inside' } },
    { jsonrpc: '2.0', id: 'x', result: [1, 2, 3] },
  ];
  const stream = Buffer.concat(msgs.map((m) => encodeFrame(m)));
  t.equal(
    stream.filter((b) => b === 0).length,
    3,
    'encodeFrame escapes NUL inside strings: one NUL per message',
  );
  const expected = msgs.map((m) => JSON.stringify(m));

  t.same(frames(new FrameDecoder().push(stream)), expected, 'one chunk');

  const d = new FrameDecoder();
  const got: FrameEvent[] = [];
  for (const b of stream) got.push(...d.push(Uint8Array.of(b)));
  t.same(frames(got), expected, 'one byte at a time (multi-byte UTF-8 split too)');
  t.same(
    got.map((e) => (e.kind === 'frame' ? e.offset : -1)),
    [0, encodeFrame(msgs[0]).length, encodeFrame(msgs[0]).length + encodeFrame(msgs[1]).length],
    'offsets are stream offsets of each frame start',
  );

  for (let cut = 0; cut <= stream.length; cut++) {
    const dd = new FrameDecoder();
    const evs = [...dd.push(stream.subarray(0, cut)), ...dd.push(stream.subarray(cut))];
    if (frames(evs).join('|') !== expected.join('|')) {
      t.fail(`split at ${cut} broke framing`);
      return;
    }
  }
  t.pass('every two-chunk split gives the same frames');
  t.equal(d.buffered, 0, 'nothing left over');
});

t.test('framing: bad input gives typed errors and the stream goes on', async (t) => {
  const d = new FrameDecoder({ maxMessageBytes: 16 });
  const bad = Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0]); // '{' + invalid 2-byte seq + '}'
  const evs = d.push(Buffer.concat([bad, Buffer.from('\0'), Buffer.from('{"a":1}\0')]));
  t.same(errors(evs), ['CONTROL_ERR_ENCODING', 'CONTROL_ERR_EMPTY']);
  const enc = evs[0]!.kind === 'error' ? evs[0]!.error : null;
  t.ok(enc instanceof ControlFrameError);
  t.equal(enc!.offset, 0);
  t.match(enc!.message, /invalid UTF-8 at byte 1/);
  t.same(frames(evs), ['{"a":1}'], 'the next frame still decodes');

  // Oversize: an error once, the rest of that frame discarded, then framing resumes.
  const big = Buffer.concat([Buffer.alloc(40, 0x61), Buffer.from('\0{"b":2}\0')]);
  const got: FrameEvent[] = [];
  for (let i = 0; i < big.length; i += 7) got.push(...d.push(big.subarray(i, i + 7)));
  t.same(errors(got), ['CONTROL_ERR_TOO_LARGE']);
  t.same(frames(got), ['{"b":2}']);
  const tl = got[0]!.kind === 'error' ? got[0]!.error : null;
  t.equal(tl!.offset, bad.length + 1 + 8, 'offset of the oversize frame');

  // Exactly the maximum is fine.
  t.same(frames(new FrameDecoder({ maxMessageBytes: 4 }).push(Buffer.from('"ab"\0'))), ['"ab"']);
  t.throws(() => new FrameDecoder({ maxMessageBytes: 0 }));

  t.equal(firstInvalidUtf8(Buffer.from('héllo')), 6);
  t.equal(firstInvalidUtf8(Buffer.from([0x61, 0xed, 0xa0, 0x80])), 1, 'surrogate refused');
  t.equal(firstInvalidUtf8(Buffer.from([0xe2, 0x82])), 0, 'truncated sequence');
  t.equal(firstInvalidUtf8(Buffer.from([0xc0, 0x80])), 0, 'overlong refused');
});

t.test(
  'framing fuzz: random bytes and random splits never throw and agree with one-shot decoding',
  async (t) => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let round = 0; round < 300; round++) {
      const len = Math.floor(rnd() * 200);
      const bytes = Buffer.alloc(len);
      for (let i = 0; i < len; i++) bytes[i] = rnd() < 0.1 ? 0 : Math.floor(rnd() * 256);
      const once = new FrameDecoder({ maxMessageBytes: 32 }).push(bytes);
      const d = new FrameDecoder({ maxMessageBytes: 32 });
      const pieces: FrameEvent[] = [];
      let pos = 0;
      while (pos < len) {
        const n = 1 + Math.floor(rnd() * 9);
        pieces.push(...d.push(bytes.subarray(pos, pos + n)));
        pos += n;
      }
      const show = (evs: FrameEvent[]): string =>
        evs
          .map((e) => (e.kind === 'frame' ? `F${e.offset}:${e.text}` : `E${e.error.offset}:${e.error.code}`))
          .join('|');
      if (show(once) !== show(pieces)) {
        t.fail(`round ${round}: split decoding differs`);
        return;
      }
      for (const e of once) if (e.kind === 'frame') parseRpc(e.text);
    }
    t.pass('300 random streams');
  },
);

t.test('JSON-RPC validation', async (t) => {
  t.match(parseRpc('{"jsonrpc":"2.0","id":7,"method":"Status.Get"}'), {
    kind: 'request',
    id: 7,
    method: 'Status.Get',
  });
  t.match(parseRpc('{"jsonrpc":"2.0","method":"NoOp"}'), { kind: 'notification', method: 'NoOp' });
  t.match(parseRpc('{"jsonrpc":"2.0","id":"a","result":{}}'), { kind: 'response', id: 'a' });
  const cases: Array<[string, number, RegExp]> = [
    ['{"jsonrpc":"2.0",', RPC_ERR.PARSE, /Parse error/],
    ['[1,2]', RPC_ERR.INVALID_REQUEST, /Batch/],
    ['42', RPC_ERR.INVALID_REQUEST, /object/],
    ['{"id":1,"method":"X"}', RPC_ERR.INVALID_REQUEST, /jsonrpc/],
    ['{"jsonrpc":"1.0","id":1,"method":"X"}', RPC_ERR.INVALID_REQUEST, /jsonrpc/],
    ['{"jsonrpc":"2.0","id":{},"method":"X"}', RPC_ERR.INVALID_REQUEST, /id/],
    ['{"jsonrpc":"2.0","id":null,"method":"X"}', RPC_ERR.INVALID_REQUEST, /id/],
    ['{"jsonrpc":"2.0","id":1,"method":""}', RPC_ERR.INVALID_REQUEST, /method/],
    ['{"jsonrpc":"2.0","id":1}', RPC_ERR.INVALID_REQUEST, /method/],
    ['{"jsonrpc":"2.0","id":1,"method":"X","params":5}', RPC_ERR.INVALID_PARAMS, /params/],
  ];
  for (const [text, code, msg] of cases) {
    const r = parseRpc(text);
    t.equal(r.kind, 'invalid', text);
    if (r.kind === 'invalid') {
      t.equal(r.code, code, text);
      t.match(r.message, msg, text);
    }
  }
  const r = parseRpc('{"jsonrpc":"1.0","id":9,"method":"X"}');
  t.equal(r.kind === 'invalid' ? r.id : undefined, 9, 'the id is echoed when it can be read');
});

t.test('registry: types, ranges, units, change events, ramps in virtual time', async (t) => {
  const clock = new FakeClock(0);
  const reg = new ControlRegistry({ clock });
  const seen: string[] = [];
  reg.onChange((c) => seen.push(`${c.name}=${String(c.value)}/${c.source}`));
  const sets: unknown[] = [];
  reg.register({
    name: 'gain',
    type: 'float',
    min: -100,
    max: 20,
    unit: 'dB',
    writable: true,
    onSet: (v) => sets.push(v),
  });
  reg.register({ name: 'mute', type: 'boolean', writable: true });
  reg.register({ name: 'steps', type: 'integer', min: 0, max: 10, writable: true });
  reg.register({ name: 'label', type: 'string', writable: true, maxLength: 5 });
  reg.register({ name: 'go', type: 'trigger', writable: true });
  const meter = reg.register({
    name: 'meter',
    type: 'float',
    min: -120,
    max: 0,
    unit: 'dB',
    writable: false,
    initial: -120,
  });

  t.match(reg.read('GAIN').snapshot, {
    Name: 'gain',
    Value: 0,
    String: '0.00dB',
    ValueMin: -100,
    ValueMax: 20,
    Unit: 'dB',
  });
  t.throws(() => reg.register({ name: 'Gain', type: 'boolean', writable: false }), {
    code: 'CONTROL_ERR_DUPLICATE',
  });
  t.throws(() => reg.register({ name: 'bad name!', type: 'boolean', writable: false }), {
    code: 'CONTROL_ERR_BAD_SPEC',
  });
  t.throws(() => reg.register({ name: 'x', type: 'float', min: 1, max: 1, writable: false }), {
    code: 'CONTROL_ERR_BAD_SPEC',
  });

  t.equal(reg.setFromLink('gain', 50).Value, 20, 'clamped to max');
  t.equal(reg.setFromLink('steps', 3.6).Value, 4, 'integer rounds');
  t.equal(reg.setFromLink('mute', 1).Value, true);
  t.throws(() => reg.setFromLink('mute', 'yes'), { code: 'CONTROL_ERR_BAD_VALUE' });
  t.throws(() => reg.setFromLink('label', 'toolong'), { code: 'CONTROL_ERR_BAD_VALUE' });
  t.throws(() => reg.setFromLink('gain', Number.NaN), { code: 'CONTROL_ERR_BAD_VALUE' });
  t.throws(() => reg.setFromLink('meter', -3), { code: 'CONTROL_ERR_READ_ONLY' });
  try {
    reg.setFromLink('nope', 1);
    t.fail('unknown control accepted');
  } catch (e) {
    t.ok(e instanceof ControlRegistryError && e.code === 'CONTROL_ERR_UNKNOWN_CONTROL', 'unknown control');
  }
  t.equal(reg.setFromLink('go', true).Value, false, 'a trigger reads back false');
  t.equal(reg.read('mute').snapshot.Position, 1);

  meter.update(-6);
  meter.update(-6);
  t.equal(
    seen.filter((s) => s.startsWith('meter')).length,
    1,
    'an internal update to the same value is not a change',
  );

  // Ramp: -100 -> 0 over 1 s, stepped every 20 ms.
  reg.setFromLink('gain', -100);
  sets.length = 0;
  reg.setFromLink('gain', 0, 1);
  clock.advance(500);
  const mid = reg.read('gain').snapshot.Value as number;
  t.ok(mid > -60 && mid < -40, `half way after 0.5 s (${mid})`);
  clock.advance(600);
  t.equal(reg.read('gain').snapshot.Value, 0, 'ramp ends exactly on target');
  t.equal(clock.pendingCount, 0, 'no timers left');
  t.ok(sets.length >= 40 && sets.at(-1) === 0, 'onSet saw each step and the target');
  // A new set cancels a running ramp.
  reg.setFromLink('gain', -50, 10);
  clock.advance(100);
  reg.setFromLink('gain', 10);
  clock.advance(10_000);
  t.equal(reg.read('gain').snapshot.Value, 10);

  // Change groups: new controls count as changed; then only real changes.
  const g = new ChangeGroup('g1');
  g.add(['gain', 'mute', 'meter']);
  t.same(
    g.poll(reg).map((c) => c.Name),
    ['gain', 'mute', 'meter'],
  );
  t.same(g.poll(reg), []);
  meter.update(-12);
  t.same(g.poll(reg), [{ Name: 'meter', Value: -12, String: '-12.00dB', Position: 0.9 }]);
  g.invalidate();
  t.equal(g.poll(reg).length, 3);
  meter.unregister();
  reg.setFromLink('mute', false);
  t.same(
    g.poll(reg).map((c) => c.Name),
    ['mute'],
    'an unregistered control drops out of the group',
  );
  t.equal(g.size, 2);
});

t.test('trust decisions', async (t) => {
  const fp = (n: number): string => normaliseFingerprint(n.toString(16).padStart(2, '0').repeat(32));
  const ref = (n: number) => ({ name: `core${n}`, fingerprint256: fp(n), addedAt: '2026-01-01T00:00:00Z' });
  const open: DeviceState = defaultDeviceState();
  t.match(decideConnection(open, 'plain', null), { allow: true, trusted: false });
  t.match(decideConnection(open, 'tls', fp(1)), { allow: true, trusted: false, recordPending: true });
  t.match(decideConnection(open, 'tls', null), { allow: true });
  const secure: DeviceState = {
    ...open,
    trustedCores: [ref(1)],
    pendingCores: [ref(2)],
    declinedCores: [ref(3)],
  };
  t.match(decideConnection(secure, 'plain', null), { allow: false, reason: 'plaintext-in-secure-mode' });
  t.match(decideConnection(secure, 'tls', fp(1)), { allow: true, trusted: true });
  t.match(decideConnection(secure, 'tls', fp(2)), { allow: false, reason: 'pending', recordPending: false });
  t.match(decideConnection(secure, 'tls', fp(4)), { allow: false, reason: 'pending', recordPending: true });
  t.match(decideConnection(secure, 'tls', fp(3)), { allow: false, reason: 'declined' });
  t.match(decideConnection({ ...open, declinedCores: [ref(3)] }, 'tls', fp(3)), {
    allow: false,
    reason: 'declined',
  });
  t.match(decideConnection(secure, 'tls', null), { allow: false, reason: 'no-certificate' });
  t.equal(normaliseFingerprint('ab'.repeat(32)), fp(0xab));
  t.throws(() => normaliseFingerprint('abc'));
});
