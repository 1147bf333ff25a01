/**
 * The receive fast path: the allocation-free RTP scan agrees with the full decoder on every
 * input, and payloads read in place match the copying reader.
 */
import t from 'tap';
import {
  checkPayload,
  createRtpView,
  decodeRtp,
  encodeRtp,
  payloadBytes,
  qlanFormat,
  readPayload,
  readPayloadAt,
  RtpDecodeError,
  scanRtp,
  writePayload,
} from '../../../firmware/audio/rtp-codec.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

t.test('scanRtp: same verdict and fields as decodeRtp + checkPayload on fuzzed datagrams', async (t) => {
  const f = qlanFormat(2);
  const base = encodeRtp({
    padding: true,
    paddingBytes: 4,
    marker: true,
    payloadType: 98,
    sequence: 0xfffe,
    timestamp: 0xfffffff0,
    ssrc: 0x80000001,
    csrc: [4, 5],
    extension: { profile: 1, data: Buffer.alloc(8) },
    payload: Buffer.alloc(payloadBytes(f), 7),
  });
  const r = rng(777);
  const view = createRtpView();
  let agreed = 0;
  let good = 0;
  for (let i = 0; i < 20000; i++) {
    let d = Buffer.from(base);
    if (i % 3 === 0)
      d = Buffer.from(Array.from({ length: Math.floor(r() * 60) }, () => Math.floor(r() * 256)));
    else if (i % 3 === 1) {
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) d[Math.floor(r() * 16)] = Math.floor(r() * 256);
      if (r() < 0.3) d = d.subarray(0, Math.floor(r() * (d.length + 1)));
    }
    let want: string | null = null;
    let pkt = null;
    try {
      pkt = decodeRtp(d);
      checkPayload(pkt, f, 98);
    } catch (e) {
      if (!(e instanceof RtpDecodeError)) throw e;
      want = e.code;
    }
    let got: string | null = scanRtp(d, view);
    if (got === null && view.payloadType !== 98) got = 'AUDIO_ERR_PAYLOAD_TYPE';
    else if (got === null && view.payloadLength !== payloadBytes(f)) got = 'AUDIO_ERR_PAYLOAD_SIZE';
    if (got !== want) {
      t.fail(`datagram ${d.toString('hex')}: scan ${got}, decode ${want}`);
      return;
    }
    if (want === null && pkt) {
      good++;
      const same =
        view.sequence === pkt.sequence &&
        view.timestamp === pkt.timestamp &&
        view.ssrc === pkt.ssrc &&
        view.payloadOffset === pkt.payload.byteOffset - d.byteOffset &&
        view.payloadLength === pkt.payload.length;
      if (!same) {
        t.fail(`fields differ for ${d.toString('hex')}`);
        return;
      }
    }
    agreed++;
  }
  t.equal(agreed, 20000, 'every verdict agrees');
  t.ok(good > 1000, `${good} well-formed datagrams compared field by field`);
});

t.test('readPayloadAt reads in place what readPayload reads from a copy', async (t) => {
  const r = rng(5);
  for (const enc of ['F32', 'L24', 'L16'] as const) {
    const src = Float32Array.from({ length: 96 }, () => r() * 2 - 1);
    src[3] = -0;
    src[4] = 1;
    const bytes = Buffer.alloc(20 + 96 * 4);
    writePayload(enc, src, 0, 96, bytes, 20);
    const a = new Float32Array(96);
    const b = new Float32Array(96);
    readPayload(enc, bytes.subarray(20), 96, a, 0);
    readPayloadAt(enc, bytes, 20, 96, b, 0);
    t.same([...b], [...a], `${enc}: identical`);
    if (enc === 'F32') t.same([...b], [...src], 'F32: exact');
  }
});
