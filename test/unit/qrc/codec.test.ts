/**
 * QRC framing and JSON-RPC layer: byte fixtures, splits, bad input, round trips, seeded fuzz.
 */
import t from 'tap';
import { encodeQrcFrame, QrcFrameDecoder, type QrcFrameEvent } from '../../../bench/core/qrc/frame-codec.js';
import { QRC_ERR } from '../../../bench/core/qrc/errors.js';
import { parseQrcMessage, qrcError, qrcNotification, qrcResult } from '../../../bench/core/qrc/rpc.js';

const texts = (evs: QrcFrameEvent[]): string[] => evs.flatMap((e) => (e.kind === 'message' ? [e.text] : []));

/** mulberry32: repeatable fuzz. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('encode: byte fixture of a NoOp request', async (t) => {
  const bytes = encodeQrcFrame({ jsonrpc: '2.0', id: 1, method: 'NoOp', params: {} });
  t.equal(
    bytes.toString('hex'),
    Buffer.from('{"jsonrpc":"2.0","id":1,"method":"NoOp","params":{}}').toString('hex') + '00',
    'compact JSON then one NUL',
  );
  const nul = encodeQrcFrame({ s: 'a\u0000b' });
  t.equal(
    nul.indexOf(0),
    nul.length - 1,
    'a NUL inside a string is escaped: the only raw NUL ends the frame',
  );
});

t.test('decode: the documented StatusGet fixture, several frames per chunk, any split', async (t) => {
  // As the public how-to shows it, with spaces, then a Control.Get, then a NoOp.
  const fixture = Buffer.concat([
    Buffer.from('{"jsonrpc": "2.0", "method": "StatusGet", "id": 1234,"params": 0}\0', 'utf8'),
    Buffer.from('{"jsonrpc": "2.0","id": 1234,"method": "Control.Get","params": ["Gain","Mute"]}\0', 'utf8'),
    Buffer.from('{"jsonrpc":"2.0","id":5,"method":"NoOp","params":{"t":"Grüße ✓ 🎛"}}\0', 'utf8'),
  ]);
  const all = texts(new QrcFrameDecoder().push(fixture));
  t.equal(all.length, 3, 'three frames from one chunk');
  t.same(parseQrcMessage(all[0]!), { kind: 'request', id: 1234, method: 'StatusGet', params: 0 });
  t.same(parseQrcMessage(all[1]!), {
    kind: 'request',
    id: 1234,
    method: 'Control.Get',
    params: ['Gain', 'Mute'],
  });

  const d = new QrcFrameDecoder();
  const oneByOne: QrcFrameEvent[] = [];
  for (const b of fixture) oneByOne.push(...d.push(Uint8Array.of(b)));
  t.same(texts(oneByOne), all, 'one byte at a time (multi-byte UTF-8 split too)');

  let ok = true;
  for (let a = 0; a <= fixture.length && ok; a += 3) {
    for (let b = a; b <= fixture.length; b += 7) {
      const dd = new QrcFrameDecoder();
      const evs = [
        ...dd.push(fixture.subarray(0, a)),
        ...dd.push(fixture.subarray(a, b)),
        ...dd.push(fixture.subarray(b)),
      ];
      if (texts(evs).join('|') !== all.join('|')) {
        ok = false;
        t.fail(`split at ${a}/${b} broke framing`);
        break;
      }
    }
  }
  t.ok(ok, 'three-chunk splits give the same frames');
  t.equal(d.buffered, 0, 'nothing left over');
});

t.test('decode: bad UTF-8 is a non-fatal error, empty frames are skipped, the stream goes on', async (t) => {
  const d = new QrcFrameDecoder();
  const evs = d.push(
    Buffer.concat([Buffer.from([0x7b, 0xc3, 0x28, 0x7d, 0, 0, 0]), encodeQrcFrame({ a: 1 })]),
  );
  t.equal(evs.length, 2);
  t.match(evs[0], { kind: 'error', fatal: false, offset: 0 });
  t.same(texts(evs), ['{"a":1}']);
});

t.test('decode: an oversize frame is fatal; nothing after it is decoded', async (t) => {
  const d = new QrcFrameDecoder({ maxFrameBytes: 32 });
  const evs = d.push(
    Buffer.concat([
      encodeQrcFrame({ ok: 1 }),
      Buffer.from('{"x":"' + 'y'.repeat(40) + '"}\0'),
      encodeQrcFrame({ ok: 2 }),
    ]),
  );
  t.same(texts(evs), ['{"ok":1}'], 'the frame before is delivered');
  t.match(evs[1], { kind: 'error', fatal: true });
  t.equal(evs.length, 2, 'the frame after is not');
  t.same(d.push(encodeQrcFrame({ ok: 3 })), [], 'later chunks yield nothing');

  // The limit trips before the NUL arrives (a client that never sends one).
  const d2 = new QrcFrameDecoder({ maxFrameBytes: 32 });
  t.same(d2.push(Buffer.alloc(20, 0x41)), []);
  t.match(d2.push(Buffer.alloc(20, 0x41)), [{ kind: 'error', fatal: true }], 'detected without a NUL');
  t.equal(new QrcFrameDecoder().maxFrameBytes, 1024 * 1024, 'default limit 1 MiB');
});

t.test('rpc: classification of requests, notifications and invalid messages', async (t) => {
  const cases: Array<[string, unknown]> = [
    [
      '{"jsonrpc":"2.0","id":7,"method":"NoOp","params":{}}',
      { kind: 'request', id: 7, method: 'NoOp', params: {} },
    ],
    [
      '{"jsonrpc":"2.0","id":"a","method":"NoOp"}',
      { kind: 'request', id: 'a', method: 'NoOp', params: undefined },
    ],
    ['{"jsonrpc":"2.0","method":"NoOp"}', { kind: 'notification', method: 'NoOp', params: undefined }],
    ['{nope', { kind: 'invalid', id: null, code: QRC_ERR.PARSE }],
    [
      '[{"jsonrpc":"2.0","id":1,"method":"NoOp"}]',
      { kind: 'invalid', id: null, code: QRC_ERR.INVALID_REQUEST },
    ],
    ['42', { kind: 'invalid', id: null, code: QRC_ERR.INVALID_REQUEST }],
    ['{"jsonrpc":"1.0","id":3,"method":"NoOp"}', { kind: 'invalid', id: 3, code: QRC_ERR.INVALID_REQUEST }],
    ['{"jsonrpc":"2.0","id":3,"method":""}', { kind: 'invalid', id: 3, code: QRC_ERR.INVALID_REQUEST }],
    ['{"jsonrpc":"2.0","id":3,"method":5}', { kind: 'invalid', id: 3, code: QRC_ERR.INVALID_REQUEST }],
    [
      '{"jsonrpc":"2.0","id":null,"method":"NoOp"}',
      { kind: 'invalid', id: null, code: QRC_ERR.INVALID_REQUEST },
    ],
    [
      '{"jsonrpc":"2.0","id":{},"method":"NoOp"}',
      { kind: 'invalid', id: null, code: QRC_ERR.INVALID_REQUEST },
    ],
  ];
  for (const [text, want] of cases) t.match(parseQrcMessage(text), want as object, text);
});

t.test('rpc: replies round-trip through the frame codec', async (t) => {
  const msgs = [
    qrcResult(1, { Id: 'g', Changes: [] }),
    qrcResult(2, undefined),
    qrcError(null, -32700, 'Parse error'),
    qrcNotification('EngineStatus', { State: 'Active' }),
  ];
  t.same(qrcResult(2, undefined)['result'], true, 'an empty result is true');
  const d = new QrcFrameDecoder();
  const back = texts(d.push(Buffer.concat(msgs.map((m) => encodeQrcFrame(m))))).map(
    (s) => JSON.parse(s) as unknown,
  );
  t.same(back, msgs);
});

t.test('seeded fuzz: random and mutated input never throws and classifies every frame', async (t) => {
  const rand = rng(0x51c);
  const seeds = [
    '{"jsonrpc":"2.0","id":1,"method":"Control.Set","params":{"Name":"MainGain","Value":-3,"Ramp":2}}',
    '{"jsonrpc":"2.0","id":2,"method":"ChangeGroup.AddComponentControl","params":{"Id":"g","Component":{"Name":"Gain1","Controls":[{"Name":"gain"}]}}}',
  ];
  let frames = 0;
  for (let i = 0; i < 3000; i++) {
    let bytes: Buffer;
    if (i % 3 === 0) {
      bytes = Buffer.alloc(1 + Math.floor(rand() * 80));
      for (let k = 0; k < bytes.length; k++) bytes[k] = Math.floor(rand() * 256);
    } else {
      bytes = Buffer.from(seeds[i % 2]! + '\0', 'utf8');
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    }
    const d = new QrcFrameDecoder({ maxFrameBytes: 200 });
    let pos = 0;
    while (pos < bytes.length) {
      const n = 1 + Math.floor(rand() * 16);
      for (const ev of d.push(bytes.subarray(pos, pos + n))) {
        frames++;
        if (ev.kind !== 'message') continue;
        const m = parseQrcMessage(ev.text);
        if (!['request', 'notification', 'invalid'].includes(m.kind)) t.fail(`bad kind for ${ev.text}`);
        if (m.kind === 'invalid' && !Object.values(QRC_ERR).includes(m.code))
          t.fail('code outside the table');
      }
      pos += n;
    }
  }
  t.ok(frames > 1000, `fuzzed ${frames} frames (messages and errors) without a throw`);
});
