import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  checkFormat,
  checkPayload,
  decodeRtp,
  encodeRtp,
  payloadBytes,
  qlanFormat,
  readPayload,
  RtpDecodeError,
  writePayload,
  writeRtpHeader,
  type RtpPacket,
} from '../../../firmware/audio/rtp-codec.js';
import { decodeRtcp, encodeRtcp, type RtcpPacket } from '../../../firmware/audio/rtcp-codec.js';
import { decodeSdp, encodeSdp, SdpError, type SdpStream } from '../../../firmware/audio/sdp-codec.js';
import { decodeSap, encodeSap, sapHash, SapDecodeError } from '../../../firmware/audio/sap-codec.js';
import {
  AlsaQueueEstimator,
  AlsaStatusError,
  parsePcmStatus,
  type PcmStatus,
} from '../../../firmware/audio/alsa-pcm-status.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/audio/${name}`, import.meta.url), 'utf8');

/** Small seeded PRNG (mulberry32) so fuzz runs are repeatable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('RTP header: RFC 3550 byte fixture decodes field by field', async (t) => {
  // V=2 P=0 X=0 CC=0 | M=1 PT=96 | seq 0x1234 | ts 0xdeadbeef | ssrc 0x01020304 | payload aa bb
  const p = decodeRtp(hex('80e0 1234 deadbeef 01020304 aabb'));
  t.equal(p.marker, true);
  t.equal(p.payloadType, 96);
  t.equal(p.sequence, 0x1234);
  t.equal(p.timestamp, 0xdeadbeef);
  t.equal(p.ssrc, 0x01020304);
  t.same([...p.payload], [0xaa, 0xbb]);
  t.same(p.csrc, []);
  t.equal(p.extension, null);
  // CSRCs, extension and padding, all at once.
  const full = hex(
    'b2 62 0001 00000010 cafebabe 11111111 22222222 bede 0001 01020304 5566 0000 03'.replace(/ /g, ''),
  );
  const q = decodeRtp(full);
  t.same(q.csrc, [0x11111111, 0x22222222]);
  t.same(q.extension && { profile: q.extension.profile, data: [...q.extension.data] }, {
    profile: 0xbede,
    data: [1, 2, 3, 4],
  });
  t.same([...q.payload], [0x55, 0x66], 'padding (3 bytes) stripped');
  t.equal(q.marker, false);
  t.equal(q.payloadType, 0x62);
  t.same(encodeRtp(q), full, 're-encodes to the same bytes');
});

t.test('RTP round trips and the in-place header writer agree with encodeRtp', async (t) => {
  const r = rng(7);
  for (let i = 0; i < 200; i++) {
    const csrc = Array.from({ length: Math.floor(r() * 16) }, () => Math.floor(r() * 2 ** 32));
    const ext =
      r() < 0.3 ? { profile: Math.floor(r() * 65536), data: Buffer.alloc(4 * Math.floor(r() * 4), 7) } : null;
    const payload = Buffer.alloc(Math.floor(r() * 100), i & 0xff);
    const pad = r() < 0.3 ? 1 + Math.floor(r() * 8) : 0;
    const pkt: RtpPacket = {
      padding: pad > 0,
      paddingBytes: pad,
      marker: r() < 0.5,
      payloadType: Math.floor(r() * 128),
      sequence: Math.floor(r() * 65536),
      timestamp: Math.floor(r() * 2 ** 32),
      ssrc: Math.floor(r() * 2 ** 32),
      csrc,
      extension: ext,
      payload,
    };
    const back = decodeRtp(encodeRtp(pkt));
    t.same(
      { ...back, payload: [...back.payload], extension: back.extension && [...back.extension.data] },
      { ...pkt, payload: [...payload], extension: ext && [...ext.data] },
      `round trip ${i}`,
    );
    if (csrc.length === 0 && !ext && !pad) {
      const b = Buffer.alloc(12 + payload.length);
      writeRtpHeader(b, pkt.payloadType, pkt.marker, pkt.sequence, pkt.timestamp, pkt.ssrc);
      b.set(payload, 12);
      t.same(b, encodeRtp(pkt), `in-place header ${i}`);
    }
  }
  t.throws(() => encodeRtp({ ...decodeRtp(hex('8060000100000001000000010000')), payloadType: 200 }), {
    code: 'AUDIO_ERR_ENCODE',
  });
});

t.test('hostile RTP datagrams fail with typed errors and offsets', async (t) => {
  const cases: Array<[string, string, string, number]> = [
    ['short', '80600001', 'AUDIO_ERR_SHORT', 0],
    ['wrong version', '40600001 00000001 00000001', 'AUDIO_ERR_VERSION', 0],
    ['huge CSRC count', '8f600001 00000001 00000001 11111111', 'AUDIO_ERR_CSRC', 0],
    ['extension past the end', '90600001 00000001 00000001 bede00ff 00000000', 'AUDIO_ERR_EXTENSION', 14],
    ['padding larger than packet', 'a0600001 00000001 00000001 aabbccff', 'AUDIO_ERR_PADDING', 15],
    ['zero padding count', 'a0600001 00000001 00000001 aabbcc00', 'AUDIO_ERR_PADDING', 15],
  ];
  for (const [name, h, code, offset] of cases) {
    try {
      decodeRtp(hex(h));
      t.fail(`${name}: accepted`);
    } catch (e) {
      t.ok(e instanceof RtpDecodeError, `${name}: typed error`);
      t.match(e, { code, offset }, name);
    }
  }
  // Wrong payload size / type for a Q-LAN stream.
  const f = qlanFormat(2);
  const good = Buffer.alloc(12 + payloadBytes(f));
  writeRtpHeader(good, 98, false, 1, 16, 9);
  t.doesNotThrow(() => checkPayload(decodeRtp(good), f, 98));
  t.throws(() => checkPayload(decodeRtp(good.subarray(0, good.length - 4)), f, 98), {
    code: 'AUDIO_ERR_PAYLOAD_SIZE',
    offset: 12,
  });
  t.throws(() => checkPayload(decodeRtp(good), f, 96), { code: 'AUDIO_ERR_PAYLOAD_TYPE' });
});

t.test('seeded fuzz: random and mutated datagrams never escape as untyped errors', async (t) => {
  const r = rng(12345);
  const base = encodeRtp({
    padding: false,
    marker: false,
    payloadType: 98,
    sequence: 1,
    timestamp: 2,
    ssrc: 3,
    csrc: [4],
    extension: { profile: 1, data: Buffer.alloc(8) },
    payload: Buffer.alloc(64),
  });
  let typed = 0;
  let ok = 0;
  for (let i = 0; i < 20000; i++) {
    let d: Buffer;
    if (i % 2) {
      d = Buffer.from(base);
      for (let k = 0; k < 1 + Math.floor(r() * 4); k++) d[Math.floor(r() * d.length)] = Math.floor(r() * 256);
      d = d.subarray(0, Math.floor(r() * (d.length + 1)));
    } else d = Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256)));
    for (const fn of [decodeRtp, decodeRtcp, decodeSap] as Array<(b: Buffer) => unknown>) {
      try {
        fn(d);
        ok++;
      } catch (e) {
        if (!(e instanceof RtpDecodeError || e instanceof SapDecodeError)) throw e;
        typed++;
      }
    }
  }
  t.ok(typed > 1000 && ok > 1000, `typed errors ${typed}, accepted ${ok}`);
});

t.test('payload formats: Q-LAN float32 BE, L24, L16 byte layout and round trips', async (t) => {
  // Two channels, first frame: ch0 = 0.5, ch1 = -1.
  const src = new Float32Array([0.5, -1, 0.25, 1]);
  const f32 = Buffer.alloc(16);
  writePayload('F32', src, 0, 4, f32, 0);
  t.equal(f32.toString('hex'), '3f000000bf8000003e8000003f800000', 'float32 big-endian, interleaved');
  const l24 = Buffer.alloc(12);
  writePayload('L24', src, 0, 4, l24, 0);
  t.equal(l24.toString('hex'), '400000800000200000' + '7fffff', 'L24: +1 clips to 0x7fffff');
  const l16 = Buffer.alloc(8);
  writePayload('L16', src, 0, 4, l16, 0);
  t.equal(l16.toString('hex'), '400080002000' + '7fff');
  const back = new Float32Array(4);
  readPayload('F32', f32, 4, back, 0);
  t.same([...back], [...src]);
  readPayload('L24', l24, 4, back, 0);
  t.same([...back.slice(0, 3)], [0.5, -1, 0.25]);
  t.ok(Math.abs(back[3]! - 1) < 2e-7);
  const r = rng(3);
  const noise = Float32Array.from({ length: 480 }, () => r() * 2 - 1);
  for (const enc of ['L24', 'L16'] as const) {
    const b = Buffer.alloc(480 * (enc === 'L24' ? 3 : 2));
    writePayload(enc, noise, 0, 480, b, 0);
    const out = new Float32Array(480);
    readPayload(enc, b, 480, out, 0);
    const step = enc === 'L24' ? 1 / 8388608 : 1 / 32768;
    t.ok(
      out.every((v, i) => Math.abs(v - noise[i]!) <= step / 2 + 1e-9),
      `${enc} quantises within half a step`,
    );
  }
  t.throws(() => checkFormat({ encoding: 'F32', channels: 17, framesPerPacket: 16 }), {
    code: 'AUDIO_ERR_ENCODE',
  });
  t.throws(() => checkFormat({ encoding: 'L24', channels: 9, framesPerPacket: 48 }), {
    code: 'AUDIO_ERR_ENCODE',
  });
  t.throws(() => checkFormat({ encoding: 'L24', channels: 2, framesPerPacket: 40 }), {
    code: 'AUDIO_ERR_ENCODE',
  });
  for (const fpp of [6, 12, 16, 48])
    t.doesNotThrow(() => checkFormat({ encoding: 'L24', channels: 8, framesPerPacket: fpp }));
  t.equal(payloadBytes(qlanFormat(16)), 1024, 'Q-LAN 16 ch packet: 1024 payload bytes');
});

t.test('RTCP: SR, RR and Q-LAN ack round trip; compound; hostile input', async (t) => {
  const block = {
    ssrc: 0x11223344,
    fractionLost: 12,
    cumulativeLost: -5,
    extendedHighestSeq: 0x10005,
    jitter: 33,
    lastSr: 0xabcdef01,
    delaySinceLastSr: 655,
  };
  const pkts: RtcpPacket[] = [
    {
      type: 'sr',
      ssrc: 1,
      ntpSeconds: 0xe0000000,
      ntpFraction: 0x80000000,
      rtpTimestamp: 48000,
      packetCount: 10,
      octetCount: 10240,
      reports: [block],
    },
    { type: 'rr', ssrc: 2, reports: [block, { ...block, ssrc: 9, cumulativeLost: 0x7fffff }] },
    {
      type: 'qlan-ack',
      ssrc: 3,
      mediaSsrc: 4,
      extendedHighestSeq: 70000,
      received: 69990,
      lost: 10,
      late: 2,
      jitter: 7,
    },
  ];
  const bytes = encodeRtcp(pkts);
  t.same(decodeRtcp(bytes), pkts);
  t.equal(bytes.subarray(0, 4).toString('hex'), '81c8000c', 'SR header: RC=1, PT=200, length 12 (13 words)');
  const ack = encodeRtcp([pkts[2]!]);
  t.equal(ack.subarray(0, 12).toString('hex'), '80cc0008' + '00000003' + Buffer.from('QLAK').toString('hex'));
  t.throws(
    () => decodeRtcp(hex('81c90001 00000001')),
    { code: 'AUDIO_ERR_RTCP' },
    'report block does not fit',
  );
  t.throws(() => decodeRtcp(hex('80c900ff 00000001')), { code: 'AUDIO_ERR_RTCP' }, 'length past the end');
  t.throws(() => decodeRtcp(hex('40c90001 00000001')), { code: 'AUDIO_ERR_VERSION' });
  t.same(decodeRtcp(hex('81ca0001 00000001')), [], 'SDES is skipped');
});

const OUR_SDP: SdpStream = {
  sessionId: '1311738121',
  sessionVersion: '1311738121',
  origin: '127.0.4.1',
  name: 'qperiph-1234 out 1-2',
  destination: '239.69.4.1',
  ttl: 32,
  port: 5004,
  payloadType: 96,
  encoding: 'L24',
  channels: 2,
  rate: 48000,
  ptimeMs: 1,
  framesPerPacket: 48,
  ptp: { gmIdentity: '00-1D-C1-FF-FE-12-34-56', domain: 0 },
  mediaclkOffset: 963214424,
  info: '1 2',
};

t.test('SDP: our AES67 description matches the fixture and round trips', async (t) => {
  const text = encodeSdp(OUR_SDP);
  t.equal(text, fixture('aes67-ours.sdp').replace(/\r?\n/g, '\r\n'));
  t.same(decodeSdp(text), OUR_SDP);
  t.same(decodeSdp(encodeSdp({ ...OUR_SDP, ptp: null, destination: '127.0.4.9' })).ptp, null);
  const short = { ...OUR_SDP, framesPerPacket: 6, ptimeMs: 0.125 };
  t.match(encodeSdp(short), /a=ptime:0\.125\r\n/);
  t.same(decodeSdp(encodeSdp(short)), short);
});

t.test("SDP: other vendors' descriptions", async (t) => {
  const dante = decodeSdp(fixture('dante-aes67.sdp'));
  t.match(dante, {
    destination: '239.69.161.10',
    port: 5004,
    encoding: 'L24',
    channels: 2,
    framesPerPacket: 48,
    ptp: { gmIdentity: '00-1D-C1-FF-FE-0E-10-C4', domain: 0 },
    mediaclkOffset: 3825467310,
  });
  const pw = decodeSdp(fixture('pipewire.sdp'));
  t.match(pw, {
    encoding: 'L16',
    channels: 2,
    destination: '239.255.171.103',
    ptimeMs: 4,
    framesPerPacket: 192,
  });
  t.throws(() => decodeSdp('v=0\r\nm=video 5000 RTP/AVP 96\r\n'), SdpError);
  t.throws(() => decodeSdp(fixture('dante-aes67.sdp').replace('L24/48000', 'L24/44100')), {
    code: 'AUDIO_ERR_SDP',
  });
  t.throws(() => decodeSdp('v=0\r\nthis is not sdp\r\n'), { code: 'AUDIO_ERR_SDP', line: 2 });
  t.throws(() => encodeSdp({ ...OUR_SDP, name: 'a\r\nb' }), SdpError, 'no line injection');
});

t.test('SAP: header bytes, round trip, deletion, hostile input', async (t) => {
  const sdp = encodeSdp(OUR_SDP);
  const hash = sapHash(sdp);
  const pkt = encodeSap({
    deletion: false,
    msgIdHash: hash,
    origin: '127.0.4.1',
    payloadType: 'application/sdp',
    sdp,
  });
  t.equal(pkt.subarray(0, 8).toString('hex'), `2000${hash.toString(16).padStart(4, '0')}7f000401`);
  t.equal(pkt.subarray(8, 24).toString('latin1'), 'application/sdp\0');
  t.same(decodeSap(pkt), {
    deletion: false,
    msgIdHash: hash,
    origin: '127.0.4.1',
    payloadType: 'application/sdp',
    sdp,
  });
  const del = decodeSap(
    encodeSap({ deletion: true, msgIdHash: 5, origin: '10.0.0.1', payloadType: 'application/sdp', sdp }),
  );
  t.equal(del.deletion, true);
  // No payload type: SDP right after the header.
  const bare = Buffer.concat([hex('20000001 0a000001'), Buffer.from(sdp)]);
  t.equal(decodeSap(bare).sdp, sdp);
  t.throws(() => decodeSap(hex('2000')), { code: 'AUDIO_ERR_SAP_SHORT' });
  t.throws(() => decodeSap(hex('40000001 0a000001')), { code: 'AUDIO_ERR_SAP_VERSION' });
  t.throws(() => decodeSap(hex('30000001 0a000001')), { code: 'AUDIO_ERR_SAP_UNSUPPORTED' });
  t.throws(() => decodeSap(hex('21000001 0a000001')), { code: 'AUDIO_ERR_SAP_UNSUPPORTED' });
  t.throws(() => decodeSap(hex('2005000a 0a000001 00')), { code: 'AUDIO_ERR_SAP_SHORT' });
  t.not(sapHash(sdp), sapHash(sdp + 'a=x\r\n'), 'hash changes with the SDP');
});

t.test('ALSA substream status (procfs): fixture, closed, hostile text; queue estimate', async (t) => {
  const text = readFileSync(new URL('../../fixtures/audio/pcm-status-running.txt', import.meta.url), 'utf8');
  t.same(parsePcmStatus(text), {
    open: true,
    state: 'RUNNING',
    ownerPid: 1234,
    delay: 528,
    avail: 240,
    hwPtr: 480,
    applPtr: 1008,
  });
  t.same(parsePcmStatus('closed\n'), { open: false });
  // Kernels before owner_pid existed.
  t.equal((parsePcmStatus(text.replace(/owner_pid.*\n/, '')) as { ownerPid: number | null }).ownerPid, null);
  for (const bad of [
    '',
    'error -19\n',
    text.replace('RUNNING', 'WEIRD'),
    text.replace('528', '5x8'),
    text.replace(/hw_ptr.*\n/, ''),
  ])
    t.throws(
      () => parsePcmStatus(bad),
      { code: 'AUDIO_ERR_ALSA_STATUS' },
      `rejects ${JSON.stringify(bad.slice(0, 24))}`,
    );
  const r = rng(777);
  let typed = 0;
  for (let i = 0; i < 5000; i++) {
    const chars = [...text];
    for (let k = 0; k < 1 + Math.floor(r() * 6); k++)
      chars[Math.floor(r() * chars.length)] = String.fromCharCode(Math.floor(r() * 128));
    try {
      parsePcmStatus(chars.join(''));
    } catch (e) {
      if (!(e instanceof AlsaStatusError)) throw e;
      typed++;
    }
  }
  t.ok(typed > 0, `mutated status text fails only with AlsaStatusError (${typed} of 5000)`);

  const est = new AlsaQueueEstimator();
  t.equal(est.queued(0), null, 'nothing known before the first reading');
  est.wrote(1000);
  const running = (applPtr: number, delay: number): Extract<PcmStatus, { open: true }> => ({
    open: true,
    state: 'RUNNING',
    ownerPid: 1,
    delay,
    avail: 0,
    hwPtr: applPtr - delay,
    applPtr,
  });
  est.onStatus(running(600, 200), 10);
  t.equal(est.queued(10), 400 + 200, 'pipe (written - appl) plus the card delay');
  est.wrote(48);
  t.equal(est.queued(12), 600 + 48 - 96, 'between readings: plus writes, minus 48 frames per ms played');
  est.onStatus({ ...running(700, 100), state: 'PREPARED' }, 20);
  t.equal(est.queued(40), 1048 - 700 + 100, 'a stopped card plays nothing between readings');
  // An xrun: ALSA moves appl_ptr up to hw_ptr, past what aplay read; consumed never passes written.
  est.onStatus(running(5000, 0), 30);
  t.equal(est.queued(30), 0, 'appl jump after an xrun is clamped to what we wrote');
  est.reset();
  t.equal(est.queued(30), null, 'reset forgets');
});
