import t from 'tap';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import {
  decodeQdp,
  encodeQdp,
  QDP_MAX_FIELD_CHARS,
  QdpDecodeError,
  QdpEncodeError,
  type QdpDecodeErrorCode,
} from '../../../firmware/qdp/qdp-codec.js';
import { QDP_MAX_PACKET_BYTES, type QdpPacket } from '../../../firmware/qdp/qdp-types.js';
import { QperiphError } from '../../../firmware/errors.js';

const fixture = (name: string): Buffer =>
  readFileSync(new URL(`../../fixtures/qdp/${name}`, import.meta.url));
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Decode, expecting a QdpDecodeError; returns it (or fails the test with what was thrown instead). */
function decodeError(input: Uint8Array | string): QdpDecodeError | undefined {
  try {
    decodeQdp(typeof input === 'string' ? utf8(input) : input);
  } catch (err) {
    return err instanceof QdpDecodeError ? err : undefined;
  }
  return undefined;
}

type Asserts = Pick<typeof t, 'strictSame' | 'equal'>;

/** The shared round-trip check: encode, decode, compare; and the encoding is a fixed point. */
function roundTrip(t: Asserts, packet: QdpPacket, label: string): void {
  const bytes = encodeQdp(packet);
  const back = decodeQdp(bytes);
  t.strictSame(back, packet, `${label}: decode(encode(p)) equals p`);
  t.equal(
    encodeQdp(back).toString('utf8'),
    bytes.toString('utf8'),
    `${label}: re-encoding is byte-identical`,
  );
}

// ---------------------------------------------------------------------------------------------

const CORE_SAMPLE: QdpPacket = {
  device: {
    name: 'core-110f-dddd',
    type: 'core',
    platform: 'core',
    partNumber: 'Core 110f',
    ref: 'device.core.core-110f-dddd',
    isVirtual: false,
    lanAIp: '192.168.1.118',
    lanALldp: '30:23:03:bf:8f:46+gi3',
    lanBIp: '',
    lanBLldp: '',
    auxAIp: '',
    auxALldp: '',
    auxBIp: '',
    auxBLldp: '',
    webCfgUrl: '/network-settings',
    secureComm: 'enabled',
  },
  control: {
    role: 'core',
    designPretty: 'camera-video-bridge',
    designCode: 'pdTHJ5GGNifl',
    primary: true,
    redundant: false,
    deviceRef: 'device.core.core-110f-dddd',
    ref: 'control.pdTHJ5GGNifl.core.primary',
  },
  queryRefs: ['control.pdTHJ5GGNifl.*'],
};

const TSC_PERIPHERAL: QdpPacket = {
  device: {
    type: 'ioframe',
    name: 'tsc-80-g2-4f1c',
    partNumber: 'TSC-80-G2',
    platform: 'tsc_g2',
    lanAIp: '192.168.1.140',
    ref: 'device.ioframe.tsc-80-g2-4f1c',
    periphCfgUrl: '/#network',
  },
  control: {
    role: 'tsc-80-g2-4f1c',
    designCode: 'Xq7LmN2pR4sT',
    primary: true,
    redundant: false,
    deviceRef: 'device.ioframe.tsc-80-g2-4f1c',
    ref: 'control.Xq7LmN2pR4sT.tsc-80-g2-4f1c',
  },
  queryRefs: [],
};

const HOBBY: QdpPacket = {
  device: { name: 'gpio-nano-01', type: 'ioframe8s', lanAIp: '192.168.1.77', periphCfgUrl: '/#network' },
  queryRefs: [],
};

t.test('fixtures decode to the expected typed values', async (t) => {
  t.strictSame(decodeQdp(fixture('core-vendor-sample.xml')), CORE_SAMPLE, 'vendor Core sample');
  t.strictSame(decodeQdp(fixture('peripheral-tsc.xml')), TSC_PERIPHERAL, 'TSC-80-G2 shaped peripheral');
  const hobby = fixture('hobby-cr.xml');
  t.ok(hobby.includes('\r'), 'hobby fixture really holds CR bytes');
  t.strictSame(decodeQdp(hobby), HOBBY, 'sparse CR-separated hobby packet');
  t.strictSame(decodeQdp(fixture('query-ioframe.xml')), { queryRefs: ['device.ioframe.*'] }, 'ioframe query');
  t.strictSame(
    decodeQdp(fixture('query-control.xml')),
    { queryRefs: ['control.Xq7LmN2pR4sT.*', 'control.*.*'] },
    'control queries, in document order',
  );

  // Our compact form of the vendor sample is the sample without the spaces between elements.
  const sample = fixture('core-vendor-sample.xml').toString('utf8');
  t.equal(
    encodeQdp(CORE_SAMPLE).toString('utf8'),
    sample.replace(/> </g, '><'),
    'vendor sample re-encodes compactly',
  );
});

t.test('encode a full peripheral announcement to exact bytes', async (t) => {
  // Properties deliberately out of order: the element order comes from the codec, not the object.
  const packet: QdpPacket = {
    queryRefs: [],
    control: {
      ref: 'control.Xq7LmN2pR4sT.nv32-7a3f',
      deviceRef: 'device.ioframe.nv32-7a3f',
      redundant: false,
      primary: true,
      designCode: 'Xq7LmN2pR4sT',
      designPretty: 'Board Room & "Lobby"',
      role: 'nv32-7a3f',
    },
    device: {
      httpsServerUp: true,
      secureComm: 'disabled',
      periphCfgUrl: '/#network',
      auxBLldp: '',
      auxBIp: '',
      auxALldp: '',
      auxAIp: '',
      lanBLldp: '',
      lanBIp: '',
      lanALldp: '',
      lanAIp: '10.0.0.21',
      isVirtual: false,
      ref: 'device.ioframe.nv32-7a3f',
      partNumber: 'NV-32-H',
      platform: 'qperiph_sbc',
      type: 'ioframe',
      name: 'nv32-7a3f',
      extra: { hw_rev: 'B', fw_build: '0012' },
    },
  };
  const expected =
    '<QDP><device><name>nv32-7a3f</name><type>ioframe</type><platform>qperiph_sbc</platform>' +
    '<part_number>NV-32-H</part_number><ref>device.ioframe.nv32-7a3f</ref><is_virtual>false</is_virtual>' +
    '<lan_a_ip>10.0.0.21</lan_a_ip><lan_a_lldp/><lan_b_ip/><lan_b_lldp/><aux_a_ip/><aux_a_lldp/><aux_b_ip/>' +
    '<aux_b_lldp/><periph_cfg_url>/#network</periph_cfg_url><secure_comm>disabled</secure_comm>' +
    '<https_server_up>true</https_server_up><hw_rev>B</hw_rev><fw_build>0012</fw_build></device>' +
    '<control><role>nv32-7a3f</role><design_pretty>Board Room &amp; &quot;Lobby&quot;</design_pretty>' +
    '<design_code>Xq7LmN2pR4sT</design_code><primary>1</primary><redundant>0</redundant>' +
    '<device_ref>device.ioframe.nv32-7a3f</device_ref><ref>control.Xq7LmN2pR4sT.nv32-7a3f</ref></control></QDP>';
  const bytes = encodeQdp(packet);
  t.ok(Buffer.isBuffer(bytes), 'returns a Buffer');
  t.equal(bytes.toString('utf8'), expected);
  t.strictSame(decodeQdp(bytes), packet, 'and decodes back');
  t.equal(
    encodeQdp({ queryRefs: ['device.ioframe*'] }).toString(),
    '<QDP><query_ref>device.ioframe*</query_ref></QDP>',
  );
});

t.test('round trips', async (t) => {
  roundTrip(t, { device: { name: 'io-1', type: 'ioframe' }, queryRefs: [] }, 'minimal device');
  roundTrip(t, CORE_SAMPLE, 'Core with control and query');
  roundTrip(t, TSC_PERIPHERAL, 'peripheral with control');
  roundTrip(t, HOBBY, 'hobby');
  roundTrip(t, { queryRefs: [] }, 'empty packet');
  roundTrip(t, { queryRefs: ['device.core*', 'device.ioframe*', 'control.*.*', ''] }, 'queries only');
  roundTrip(
    t,
    {
      device: {
        name: 'x',
        type: 'ioframe',
        httpsServerUp: false,
        isVirtual: true,
        extra: { id_mode: 'off', lan_a_mac: '' },
      },
      control: { role: 'x', designCode: 'c', primary: false, redundant: true, extra: { 'vendor.note': 'n' } },
      queryRefs: ['control.c.*'],
    },
    'with extras',
  );
  roundTrip(
    t,
    {
      device: {
        name: `A&B <c> "d" 'e'`,
        type: ' padded ',
        platform: '\ttab\r\nnewline\n',
        partNumber: '0012',
        ref: '1e5',
        secureComm: '\u00a0nbsp\u00a0',
        lanAIp: 'é 😀 \u2028',
        lanALldp: '&amp; literally',
        webCfgUrl: ']]> <![CDATA[',
        extra: { note: '   ' },
      },
      control: { role: '&#65;', designCode: '&lt;', primary: true, redundant: true, designPretty: ' ' },
      queryRefs: [' * ', '\r'],
    },
    'XML specials, whitespace at the ends, number-like strings',
  );
  const longest = 'n'.repeat(QDP_MAX_FIELD_CHARS - 1) + '😀';
  roundTrip(t, { device: { name: longest, type: 'ioframe' }, queryRefs: [] }, 'a field at the length limit');
});

t.test('decoder tolerance', async (t) => {
  const base = { device: { name: 'io-1', type: 'ioframe' }, queryRefs: [] };
  const ok = (xml: string | Buffer, expected: QdpPacket, label: string): void => {
    let got: QdpPacket | undefined;
    try {
      got = decodeQdp(typeof xml === 'string' ? utf8(xml) : xml);
    } catch (err) {
      t.fail(`${label}: threw ${(err as Error).message}`);
      return;
    }
    t.strictSame(got, expected, label);
  };
  ok(
    '<?xml version="1.0" encoding="UTF-8"?>\n<QDP><device><name>io-1</name><type>ioframe</type></device></QDP>\n',
    base,
    'XML declaration and trailing newline',
  );
  ok(
    Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      utf8('<QDP><device><name>io-1</name><type>ioframe</type></device></QDP>'),
    ]),
    base,
    'UTF-8 byte order mark',
  );
  ok(
    '<QDP>\r\n  <device>\r\n    <name>\r\n io-1 \t</name>\r\n    <type>ioframe</type>\r\n  </device>\r\n</QDP>',
    base,
    'CRLF and indentation',
  );
  ok(
    '<QDP v="2"><device id=\'7\'><name lang="en">io-1</name><type>ioframe</type></device></QDP>',
    base,
    'attributes ignored',
  );
  ok(
    '<!-- hi --><QDP><!-- a --><device><name>io<!-- b -->-1</name><type>ioframe</type></device></QDP><!-- c -->',
    base,
    'comments',
  );
  ok('<QDP><device><name><![CDATA[io-1]]></name><type>ioframe</type></device></QDP>', base, 'CDATA');
  ok(
    '<QDP><device><name>io-1</name><type>ioframe</type><lan_b_ip /></device></QDP>',
    { ...base, device: { ...base.device, lanBIp: '' } },
    'self-closing with a space',
  );
  ok(
    '<QDP><device><name>io-1</name><type>ioframe</type></device><future><x>1</x></future>text</QDP>',
    base,
    'unknown root children and root text ignored',
  );
  ok(
    '<QDP><device><name>a&amp;b&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F600;</name><type>&#32;io&#9;</type></device></QDP>',
    { device: { name: `a&b<>"'AB😀`, type: ' io\t' }, queryRefs: [] },
    'predefined entities and character references; referenced whitespace is kept',
  );
  ok(
    '<QDP><device><name> <![CDATA[ x ]]> </name><type>t</type></device></QDP>',
    { device: { name: ' x ', type: 't' }, queryRefs: [] },
    'CDATA whitespace is kept',
  );
  ok(
    '<QDP><device><name>0012</name><type>1e5</type><platform>0x1F</platform></device></QDP>',
    { device: { name: '0012', type: '1e5', platform: '0x1F' }, queryRefs: [] },
    'numbers stay strings',
  );
  ok(
    '<QDP><device><name>io-1</name><type>ioframe</type><hw_rev> B </hw_rev><lan_a_mac/><toString>x</toString><constructor>y</constructor><__proto__>z</__proto__><ns:thing>w</ns:thing></device></QDP>',
    {
      device: { name: 'io-1', type: 'ioframe', extra: { hw_rev: 'B', lan_a_mac: '', toString: 'x' } },
      queryRefs: [],
    },
    'unknown fields go to extra; names unsafe as keys or with prefixes are dropped',
  );
  t.equal(({} as Record<string, unknown>)['z'], undefined, 'no prototype pollution');
  ok(
    '<QDP><control><role>r</role><design_code>c</design_code></control></QDP>',
    { control: { role: 'r', designCode: 'c', primary: false, redundant: false }, queryRefs: [] },
    'primary and redundant default to false',
  );
  ok(
    '<QDP><device><name>n</name><type>t</type><is_virtual>1</is_virtual><https_server_up>false</https_server_up></device><control><role>r</role><design_code>c</design_code><primary>true</primary><redundant>0</redundant></control></QDP>',
    {
      device: { name: 'n', type: 't', isVirtual: true, httpsServerUp: false },
      control: { role: 'r', designCode: 'c', primary: true, redundant: false },
      queryRefs: [],
    },
    'boolean spellings',
  );
  ok(
    '<QDP><!-- <!DOCTYPE x> in a comment is just text --></QDP>',
    { queryRefs: [] },
    'a DTD inside a comment is not a declaration',
  );
});

t.test('hostile and malformed input', async (t) => {
  const cases: Array<[label: string, input: Uint8Array | string, code: QdpDecodeErrorCode, offset?: number]> =
    [
      ['billion laughs fixture', fixture('billion-laughs.xml'), 'QDP_ERR_ENTITY', 22],
      ['external entity fixture', fixture('external-entity.xml'), 'QDP_ERR_ENTITY', 22],
      ['truncated fixture', fixture('truncated.xml'), 'QDP_ERR_BAD_XML', 198],
      ['wrong root fixture', fixture('wrong-root.xml'), 'QDP_ERR_NOT_QDP', 0],
      ['nested name fixture', fixture('nested-name.xml'), 'QDP_ERR_BAD_FIELD', 13],
      ['binary junk fixture', fixture('binary-junk.bin'), 'QDP_ERR_ENCODING', 21],
      [
        'one byte too many',
        Buffer.alloc(QDP_MAX_PACKET_BYTES + 1, 0x20),
        'QDP_ERR_TOO_LARGE',
        QDP_MAX_PACKET_BYTES,
      ],
      ['oversize beats bad UTF-8', Buffer.alloc(QDP_MAX_PACKET_BYTES + 1, 0xff), 'QDP_ERR_TOO_LARGE'],
      ['lone continuation byte', Buffer.from([0x3c, 0x80]), 'QDP_ERR_ENCODING', 1],
      ['overlong slash', Buffer.from([0x3c, 0x51, 0xc0, 0xaf]), 'QDP_ERR_ENCODING', 2],
      ['UTF-8 encoded surrogate', Buffer.from([0x61, 0xed, 0xa0, 0x80]), 'QDP_ERR_ENCODING', 1],
      ['truncated sequence at the end', Buffer.from([0x61, 0x62, 0xe2, 0x82]), 'QDP_ERR_ENCODING', 2],
      ['above U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80]), 'QDP_ERR_ENCODING', 0],
      ['UTF-16 packet', Buffer.from('\ufeff<QDP/>', 'utf16le'), 'QDP_ERR_ENCODING', 0],
      ['bare ENTITY declaration', '<!ENTITY a "b"><QDP/>', 'QDP_ERR_ENTITY', 0],
      ['lowercase doctype', '<!doctype QDP><QDP/>', 'QDP_ERR_ENTITY', 0],
      ['ELEMENT declaration after root', '<QDP/><!ELEMENT QDP ANY>', 'QDP_ERR_ENTITY', 6],
      ['DOCTYPE hidden after a syntax error', '<QDP>& <!DOCTYPE x></QDP>', 'QDP_ERR_ENTITY', 7],
      ['conditional section', '<QDP><![INCLUDE[x]]></QDP>', 'QDP_ERR_ENTITY', 5],
      [
        'undeclared entity',
        '<QDP><device><name>&lol9;</name><type>t</type></device></QDP>',
        'QDP_ERR_ENTITY',
        19,
      ],
      ['HTML entity', '<QDP><query_ref>&nbsp;</query_ref></QDP>', 'QDP_ERR_ENTITY', 16],
      ['entity in an attribute', '<QDP a="&xxe;"/>', 'QDP_ERR_ENTITY', 8],
      ['bare ampersand', '<QDP><query_ref>a & b</query_ref></QDP>', 'QDP_ERR_BAD_XML', 18],
      ['NUL character reference', '<QDP><query_ref>&#0;</query_ref></QDP>', 'QDP_ERR_BAD_XML', 16],
      ['surrogate character reference', '<QDP><query_ref>&#xD800;</query_ref></QDP>', 'QDP_ERR_BAD_XML', 16],
      [
        'huge character reference',
        '<QDP><query_ref>&#99999999999999999999;</query_ref></QDP>',
        'QDP_ERR_BAD_XML',
        16,
      ],
      ['malformed character reference', '<QDP><query_ref>&#x;</query_ref></QDP>', 'QDP_ERR_BAD_XML', 16],
      ['control character', '<QDP><query_ref>a\u0001</query_ref></QDP>', 'QDP_ERR_BAD_XML', 17],
      ['U+FFFE', '<QDP><query_ref>\ufffe</query_ref></QDP>', 'QDP_ERR_BAD_XML', 16],
      ['NUL inside a comment', '<QDP><!--\u0000--></QDP>', 'QDP_ERR_BAD_XML', 9],
      ['text after the root', '<QDP/>x', 'QDP_ERR_BAD_XML', 6],
      ['text before the root', 'é<QDP/>', 'QDP_ERR_BAD_XML', 0],
      ['CDATA outside the root', '<QDP/><![CDATA[x]]>', 'QDP_ERR_BAD_XML', 6],
      [']]> in text', '<QDP>a]]></QDP>', 'QDP_ERR_BAD_XML', 6],
      ['< inside a tag', '<QDP <device/>></QDP>', 'QDP_ERR_BAD_XML', 5],
      ['unclosed comment', '<QDP><!-- </QDP>', 'QDP_ERR_BAD_XML', 5],
      ['unclosed CDATA', '<QDP><![CDATA[ </QDP>', 'QDP_ERR_BAD_XML', 5],
      ['unclosed processing instruction', '<?xml version="1.0" <QDP/>', 'QDP_ERR_BAD_XML', 0],
      ['unclosed tag', '<QDP', 'QDP_ERR_BAD_XML', 0],
      ['unclosed root', '<QDP><device>', 'QDP_ERR_BAD_XML'],
      ['mismatched tags', '<QDP>\n<device>\n<name>x</nam>\n</device></QDP>', 'QDP_ERR_BAD_XML', 22],
      [
        'mismatched tags after multi-byte text',
        '<QDP>\n<device>\n<name>éé</nam></device></QDP>',
        'QDP_ERR_BAD_XML',
        25,
      ],
      ['boolean attribute', '<QDP><device ready>x</device></QDP>', 'QDP_ERR_BAD_XML'],
      ['invalid element name', '<QDP><1a>x</1a></QDP>', 'QDP_ERR_BAD_XML'],
      ['empty datagram', '', 'QDP_ERR_BAD_XML', 0],
      ['whitespace only', ' \r\n', 'QDP_ERR_BAD_XML'],
      ['too deeply nested', '<QDP>' + '<x>'.repeat(40) + '</x>'.repeat(40) + '</QDP>', 'QDP_ERR_BAD_XML'],
      ['two roots', '<QDP/><QDP/>', 'QDP_ERR_NOT_QDP'],
      ['other root', '<QDS><query_ref>device.*</query_ref></QDS>', 'QDP_ERR_NOT_QDP', 0],
      ['namespaced root', '<q:QDP xmlns:q="urn:x"/>', 'QDP_ERR_NOT_QDP', 0],
      [
        'duplicate name',
        '<QDP><device><name>a</name><type>t</type><name>b</name></device></QDP>',
        'QDP_ERR_BAD_FIELD',
        41,
      ],
      [
        'duplicate extra',
        '<QDP><device><name>a</name><type>t</type><x/><x/></device></QDP>',
        'QDP_ERR_BAD_FIELD',
        45,
      ],
      [
        'duplicate device',
        '<QDP><device><name>a</name><type>t</type></device><device/></QDP>',
        'QDP_ERR_BAD_FIELD',
        50,
      ],
      [
        'duplicate control',
        '<QDP><control><role>r</role><design_code>c</design_code></control><control/></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      ['device without type', '<QDP><device><name>a</name></device></QDP>', 'QDP_ERR_BAD_FIELD', 5],
      ['empty device', '<QDP><device/></QDP>', 'QDP_ERR_BAD_FIELD', 5],
      ['empty name', '<QDP><device><name>  </name><type>t</type></device></QDP>', 'QDP_ERR_BAD_FIELD', 13],
      ['control without design_code', '<QDP><control><role>r</role></control></QDP>', 'QDP_ERR_BAD_FIELD'],
      [
        'control with empty role',
        '<QDP><control><role/><design_code>c</design_code></control></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'primary yes',
        '<QDP><control><role>r</role><design_code>c</design_code><primary>yes</primary></control></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'redundant 2',
        '<QDP><control><role>r</role><design_code>c</design_code><redundant>2</redundant></control></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'is_virtual empty',
        '<QDP><device><name>a</name><type>t</type><is_virtual/></device></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'https_server_up TRUE',
        '<QDP><device><name>a</name><type>t</type><https_server_up>TRUE</https_server_up></device></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'field too long',
        `<QDP><query_ref>${'q'.repeat(QDP_MAX_FIELD_CHARS + 1)}</query_ref></QDP>`,
        'QDP_ERR_BAD_FIELD',
        5,
      ],
      ['query_ref with an element', '<QDP><query_ref><a/></query_ref></QDP>', 'QDP_ERR_BAD_FIELD', 5],
      [
        'text inside device',
        '<QDP><device>hello<name>a</name><type>t</type></device></QDP>',
        'QDP_ERR_BAD_FIELD',
        5,
      ],
      [
        'CDATA inside control',
        '<QDP><control><![CDATA[x]]><role>r</role><design_code>c</design_code></control></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'unknown field holding elements',
        '<QDP><device><name>a</name><type>t</type><hw><rev/></hw></device></QDP>',
        'QDP_ERR_BAD_FIELD',
      ],
      [
        'canonical form too large',
        `<QDP><device><name>a</name><type>t</type>${Array.from({ length: 25 }, (_, i) => `<x${i}>${"'".repeat(256)}</x${i}>`).join('')}</device></QDP>`,
        'QDP_ERR_TOO_LARGE',
        -1,
      ],
    ];
  for (const [label, input, code, offset] of cases) {
    const err = decodeError(input);
    if (!err) {
      t.fail(`${label}: expected ${code}, got a value or a foreign error`);
      continue;
    }
    t.equal(err.code, code, `${label}: ${code} (${err.reason})`);
    if (offset !== undefined) t.equal(err.offset, offset, `${label}: offset ${offset}`);
  }

  const err = decodeError('<QDP><device><name>a</name><type>t</type><name>b</name></device></QDP>')!;
  t.ok(err instanceof QperiphError, 'QdpDecodeError is a QperiphError');
  t.equal(err.name, 'QdpDecodeError');
  t.equal(err.path, 'device/name', 'the path names the field');
  t.match(err.message, /device\/name/);
  t.match(err.message, /at byte 41/);
  t.equal(decodeError(utf8('<QDP/><QDP/>'))!.offset, -1, 'offset is -1 when there is no single place');
});

t.test('encoder refuses what the decoder would refuse', async (t) => {
  const device = { name: 'io', type: 'ioframe' };
  const cases: Array<[string, unknown]> = [
    ['control character', { device: { ...device, name: 'a\u0007' }, queryRefs: [] }],
    ['NUL', { queryRefs: ['\u0000'] }],
    ['lone surrogate', { device: { ...device, platform: '\ud83d' }, queryRefs: [] }],
    ['U+FFFF', { device: { ...device, platform: '\uffff' }, queryRefs: [] }],
    [
      'field too long',
      { device: { ...device, platform: 'p'.repeat(QDP_MAX_FIELD_CHARS + 1) }, queryRefs: [] },
    ],
    ['missing name', { device: { type: 'ioframe' }, queryRefs: [] }],
    ['empty type', { device: { name: 'io', type: '' }, queryRefs: [] }],
    ['missing design_code', { control: { role: 'r', primary: true, redundant: false }, queryRefs: [] }],
    [
      'non-boolean primary',
      { control: { role: 'r', designCode: 'c', primary: 1, redundant: false }, queryRefs: [] },
    ],
    ['number where text goes', { device: { ...device, lanAIp: 10 }, queryRefs: [] }],
    ['bad extra name', { device: { ...device, extra: { 'a b': 'x' } }, queryRefs: [] }],
    [
      'extra named __proto__',
      { device: { ...device, extra: JSON.parse('{"__proto__":"x"}') as object }, queryRefs: [] },
    ],
    ['extra repeating a field', { device: { ...device, extra: { name: 'x' } }, queryRefs: [] }],
    ['query refs not an array', { queryRefs: 'device.*' }],
    ['too large', { queryRefs: Array.from({ length: 40 }, () => 'q'.repeat(QDP_MAX_FIELD_CHARS)) }],
  ];
  for (const [label, packet] of cases) {
    let thrown: unknown;
    try {
      encodeQdp(packet as QdpPacket);
    } catch (err) {
      thrown = err;
    }
    t.ok(thrown instanceof QdpEncodeError, `${label}: QdpEncodeError`);
    t.equal((thrown as QdpEncodeError | undefined)?.code, 'QDP_ERR_ENCODE', `${label}: code`);
  }
});

// ---------------------------------------------------------------------------------------------
// Fuzz: seeded, deterministic. Every input either decodes to a value that survives
// encode -> decode unchanged, or is refused with a QdpDecodeError. Nothing else, and quickly.

function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

t.test('seeded fuzz', async (t) => {
  // QDP_FUZZ_SEED / QDP_FUZZ_CASES let a developer run a longer or different campaign locally.
  const next = xorshift32(Number(process.env['QDP_FUZZ_SEED'] ?? 0x51d0_2467));
  const int = (n: number): number => next() % n;
  const chance = (p: number): boolean => next() / 0x1_0000_0000 < p;
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

  const seeds = [
    'core-vendor-sample.xml',
    'peripheral-tsc.xml',
    'hobby-cr.xml',
    'query-ioframe.xml',
    'query-control.xml',
    'billion-laughs.xml',
  ].map(fixture);
  const TOKENS = [
    '<',
    '>',
    '/',
    '&',
    ';',
    '"',
    "'",
    '=',
    ' ',
    '\r',
    '\n',
    '\t',
    '\u0000',
    '\u00a0',
    'é',
    '😀',
    '<!--',
    '-->',
    '<![CDATA[',
    ']]>',
    '<?',
    '?>',
    '<!DOCTYPE x>',
    '<!ENTITY e "x">',
    '&amp;',
    '&#x41;',
    '&#0;',
    '&lol;',
    '<QDP>',
    '</QDP>',
    '<device>',
    '</device>',
    '<control>',
    '</control>',
    '<name>',
    '</name>',
    '<type>',
    '</type>',
    '<query_ref>',
    '</query_ref>',
    '<x/>',
    '<name/>',
    '<primary>1</primary>',
    ' a="1"',
  ];
  const ALPHABET = '<>/&;#!?[]-="\' \r\n\tQDPdevicnamtypqu_rf01x';
  const NAMES = [
    'name',
    'type',
    'platform',
    'part_number',
    'ref',
    'is_virtual',
    'lan_a_ip',
    'lan_b_ip',
    'secure_comm',
    'https_server_up',
    'role',
    'design_code',
    'design_pretty',
    'primary',
    'redundant',
    'device_ref',
    'hw_rev',
    'x-1',
    'toString',
    'constructor',
    '__proto__',
    'ns:el',
    'é',
    'device',
    'control',
    'query_ref',
    'QDP',
  ];
  const TEXTS = [
    '',
    ' ',
    'io',
    '0',
    '1',
    'true',
    'false',
    'a&amp;b',
    '&lt;x&gt;',
    '&#65;',
    '&#x1F600;',
    '&#32;',
    ' pad ',
    '\r\n',
    '\t',
    '0012',
    '1e5',
    'é',
    '😀',
    '<![CDATA[ c&d ]]>',
    '<!-- note -->',
    '"',
    "'",
    '&#13;',
    '&#xA0;',
    '\u00a0',
    'device.ioframe.*',
    '<?pi x?>',
  ];
  const CHARS = [
    'a',
    'Z',
    '0',
    '-',
    '.',
    ' ',
    '&',
    '<',
    '>',
    '"',
    "'",
    '\t',
    '\n',
    '\r',
    'é',
    '😀',
    '\u00a0',
    '*',
    ';',
    '#',
  ];

  const BOOLEAN_FIELDS = new Set(['is_virtual', 'https_server_up', 'primary', 'redundant']);
  const ws = (): string => pick(['', '', ' ', '\n', '\r', '\r\n', '\t ']);
  const leaf = (name: string): string => {
    const attr = chance(0.1) ? ' a="1"' : '';
    if (chance(0.1)) return `<${name}${attr}${chance(0.5) ? ' ' : ''}/>`;
    let text = '';
    if (BOOLEAN_FIELDS.has(name) && chance(0.8)) text = ws() + pick(['0', '1', 'true', 'false']) + ws();
    else for (let k = int(3); k >= 0; k--) text += pick(TEXTS);
    return `<${name}${attr}>${text}</${name}>`;
  };
  const block = (name: 'device' | 'control'): string => {
    const fields = name === 'device' ? ['name', 'type'] : ['role', 'design_code'];
    let body = '';
    for (const f of fields) if (chance(0.85)) body += ws() + leaf(f);
    for (let k = int(5); k > 0; k--) {
      const child = pick(NAMES);
      body += ws() + (chance(0.05) ? `<${child}>${leaf('deep')}</${child}>` : leaf(child));
    }
    return `<${name}>${body}${ws()}</${name}>`;
  };
  const randomTree = (): string => {
    // Mostly plausible packets (one device, one control, a few queries, unknown siblings) in a
    // random order, with now and then a second device or control to provoke duplicates.
    const parts: string[] = [];
    if (chance(0.6)) parts.push(block('device'));
    if (chance(0.4)) parts.push(block('control'));
    if (chance(0.05)) parts.push(block(pick(['device', 'control'] as const)));
    for (let k = int(3); k > 0; k--) parts.push(leaf('query_ref'));
    for (let k = int(2); k > 0; k--) parts.push(leaf(pick(NAMES)));
    for (let k = parts.length - 1; k > 0; k--) {
      const j = int(k + 1);
      [parts[k], parts[j]] = [parts[j]!, parts[k]!];
    }
    const body = parts.map((part) => ws() + part).join('');
    const root = chance(0.95) ? 'QDP' : pick(NAMES);
    return `${chance(0.2) ? '<?xml version="1.0"?>' : ''}<${root}>${body}${ws()}</${root}>${ws()}`;
  };
  const randomString = (min: number): string => {
    let s = '';
    for (let k = min + int(12); k > 0; k--) s += pick(CHARS);
    return s;
  };
  const randomPacket = (): QdpPacket => {
    const p: QdpPacket = { queryRefs: [] };
    if (chance(0.7)) {
      p.device = { name: randomString(1), type: randomString(1) };
      if (chance(0.5)) p.device.platform = randomString(0);
      if (chance(0.5)) p.device.lanBIp = randomString(0);
      if (chance(0.5)) p.device.isVirtual = chance(0.5);
      if (chance(0.3)) p.device.extra = { hw_rev: randomString(0), 'x.y-z': randomString(0) };
    }
    if (chance(0.5)) {
      p.control = {
        role: randomString(1),
        designCode: randomString(1),
        primary: chance(0.5),
        redundant: chance(0.5),
      };
      if (chance(0.5)) p.control.ref = randomString(0);
    }
    for (let k = int(4); k > 0; k--) p.queryRefs.push(randomString(0));
    return p;
  };
  const mutate = (src: Buffer): Buffer => {
    const b = Buffer.from(src);
    switch (int(6)) {
      case 0: // bit flips
        for (let k = 1 + int(4); k > 0; k--) b[int(b.length)]! ^= 1 << int(8);
        return b;
      case 1: // truncation
        return b.subarray(0, int(b.length));
      case 2: {
        // token insertion
        let s = b;
        for (let k = 1 + int(3); k > 0; k--) {
          const at = int(s.length + 1);
          s = Buffer.concat([s.subarray(0, at), utf8(pick(TOKENS)), s.subarray(at)]);
        }
        return s;
      }
      case 3: {
        // range deletion
        const at = int(b.length);
        return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + int(20))]);
      }
      case 4: {
        // slice duplication
        const at = int(b.length);
        const slice = b.subarray(at, at + 1 + int(60));
        return Buffer.concat([b.subarray(0, at), slice, slice, b.subarray(at)]);
      }
      default: // byte overwrite
        for (let k = 1 + int(3); k > 0; k--) b[int(b.length)] = int(256);
        return b;
    }
  };

  const CASES = Number(process.env['QDP_FUZZ_CASES'] ?? 24000);
  const failures: string[] = [];
  const codes = new Map<string, number>();
  let accepted = 0;
  let slowest = 0;
  const started = performance.now();
  for (let i = 0; i < CASES; i++) {
    let input: Buffer;
    let mustDecode: QdpPacket | undefined;
    switch (i % 8) {
      case 0: {
        const len = int(300);
        input = Buffer.alloc(len);
        for (let k = 0; k < len; k++)
          input[k] = chance(0.5) ? int(256) : ALPHABET.charCodeAt(int(ALPHABET.length));
        break;
      }
      case 1:
      case 2:
      case 3:
        input = mutate(pick(seeds));
        break;
      case 4:
        input = mutate(utf8(randomTree()));
        break;
      case 5:
      case 6:
        input = utf8(randomTree());
        break;
      default:
        mustDecode = randomPacket();
        input = encodeQdp(mustDecode);
    }
    const t0 = performance.now();
    try {
      const value = decodeQdp(input);
      accepted++;
      if (mustDecode && !isDeepStrictEqual(value, mustDecode))
        failures.push(`#${i}: generated packet changed`);
      const again = decodeQdp(encodeQdp(value));
      if (!isDeepStrictEqual(again, value))
        failures.push(`#${i}: not a fixed point: ${input.toString('hex')}`);
    } catch (err) {
      if (err instanceof QdpDecodeError && !mustDecode) codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      else
        failures.push(`#${i}: ${(err as Error).name} ${(err as Error).message} for ${input.toString('hex')}`);
    }
    slowest = Math.max(slowest, performance.now() - t0);
    if (failures.length > 20) break;
  }
  const elapsed = performance.now() - started;

  t.strictSame(failures, [], 'no foreign exceptions, no broken round trips');
  t.ok(accepted > CASES / 5, `a good share of inputs decode (${accepted})`);
  for (const code of [
    'QDP_ERR_ENCODING',
    'QDP_ERR_ENTITY',
    'QDP_ERR_BAD_XML',
    'QDP_ERR_NOT_QDP',
    'QDP_ERR_BAD_FIELD',
  ]) {
    t.ok((codes.get(code) ?? 0) > 0, `fuzz reached ${code}`);
  }
  t.ok(slowest < 250, `no single input is slow (slowest ${slowest.toFixed(1)} ms)`);
  t.comment(
    `fuzz: ${CASES} cases in ${elapsed.toFixed(0)} ms (${Math.round((CASES / elapsed) * 1000)}/s), ` +
      `${accepted} accepted, refused: ${[...codes].map(([c, n]) => `${c}=${n}`).join(' ')}`,
  );
});
