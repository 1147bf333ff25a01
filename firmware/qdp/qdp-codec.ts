/**
 * QDP codec: typed packet <-> XML datagram bytes. Pure (no I/O, no clocks).
 *
 * This is the only module allowed to import fast-xml-parser. The parser only ever sees text that
 * has already passed our own checks (size, UTF-8, no DTD, references and characters legal, nothing
 * outside the root element) and the library's validator, so it runs on well-formed input only.
 *
 * Canonical form: what `encodeQdp` writes, `decodeQdp` reads back to the same value, and every
 * value `decodeQdp` returns can be encoded again (the round-trip tests and the fuzz loop rely on it).
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { QperiphError } from '../errors.js';
import { QDP_MAX_PACKET_BYTES, type QdpControl, type QdpDevice, type QdpPacket } from './qdp-types.js';

/** Longest text a single field may hold, counted in Unicode code points after trimming. */
export const QDP_MAX_FIELD_CHARS = 256;

/** Elements deeper than this (the root is depth 1) are refused before the parser runs. */
const MAX_DEPTH = 32;

export type QdpDecodeErrorCode =
  | 'QDP_ERR_TOO_LARGE'
  | 'QDP_ERR_ENCODING'
  | 'QDP_ERR_ENTITY'
  | 'QDP_ERR_BAD_XML'
  | 'QDP_ERR_NOT_QDP'
  | 'QDP_ERR_BAD_FIELD';

/** A datagram that is not an acceptable QDP packet. `offset` is a byte offset into it, or -1. */
export class QdpDecodeError extends QperiphError {
  declare readonly code: QdpDecodeErrorCode;
  /** Byte offset of the problem in the datagram, -1 when there is no single place to point at. */
  readonly offset: number;
  /** What is wrong, without the offset. */
  readonly reason: string;
  /** For QDP_ERR_BAD_FIELD: the element path, e.g. `device/name`. */
  readonly path: string | undefined;

  constructor(code: QdpDecodeErrorCode, reason: string, offset = -1, path?: string) {
    super(code, offset >= 0 ? `${reason} (at byte ${offset})` : reason);
    this.offset = offset;
    this.reason = reason;
    this.path = path;
  }
}

/** A packet value that cannot be written as a QDP datagram. */
export class QdpEncodeError extends QperiphError {
  declare readonly code: 'QDP_ERR_ENCODE';
  /** The offending field (`device/name`, `query_ref[2]`), or undefined for whole-packet problems. */
  readonly path: string | undefined;

  constructor(reason: string, path?: string) {
    super('QDP_ERR_ENCODE', path ? `${path}: ${reason}` : reason);
    this.path = path;
  }
}

// ---------------------------------------------------------------------------------------------
// Field tables: XML element name, property name, how the text is read. The table order is the
// order the vendor writes the elements in, and so the order we encode them in.

type FieldKind = 'text' | 'bool' | 'bit';
type FieldSpec = readonly [element: string, prop: string, kind: FieldKind];

const DEVICE_FIELDS: readonly FieldSpec[] = [
  ['name', 'name', 'text'],
  ['type', 'type', 'text'],
  ['platform', 'platform', 'text'],
  ['part_number', 'partNumber', 'text'],
  ['ref', 'ref', 'text'],
  ['is_virtual', 'isVirtual', 'bool'],
  ['lan_a_ip', 'lanAIp', 'text'],
  ['lan_a_lldp', 'lanALldp', 'text'],
  ['lan_b_ip', 'lanBIp', 'text'],
  ['lan_b_lldp', 'lanBLldp', 'text'],
  ['aux_a_ip', 'auxAIp', 'text'],
  ['aux_a_lldp', 'auxALldp', 'text'],
  ['aux_b_ip', 'auxBIp', 'text'],
  ['aux_b_lldp', 'auxBLldp', 'text'],
  ['web_cfg_url', 'webCfgUrl', 'text'],
  ['periph_cfg_url', 'periphCfgUrl', 'text'],
  ['secure_comm', 'secureComm', 'text'],
  ['https_server_up', 'httpsServerUp', 'bool'],
];

const CONTROL_FIELDS: readonly FieldSpec[] = [
  ['role', 'role', 'text'],
  ['design_pretty', 'designPretty', 'text'],
  ['design_code', 'designCode', 'text'],
  ['primary', 'primary', 'bit'],
  ['redundant', 'redundant', 'bit'],
  ['device_ref', 'deviceRef', 'text'],
  ['ref', 'ref', 'text'],
];

const DEVICE_BY_ELEMENT = new Map(DEVICE_FIELDS.map((f) => [f[0], f]));
const CONTROL_BY_ELEMENT = new Map(CONTROL_FIELDS.map((f) => [f[0], f]));
const DEVICE_REQUIRED = ['name', 'type'] as const;
const CONTROL_REQUIRED = ['role', 'design_code'] as const;

/**
 * Names an unknown element may have to be kept in `extra` (and that `encodeQdp` accepts there).
 * Conservative on purpose: plain ASCII XML names without namespace prefixes, and never a name
 * that is special on a JavaScript object. Unknown elements with other names are dropped.
 */
const EXTRA_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function isExtraName(name: string): boolean {
  return EXTRA_NAME_RE.test(name) && !UNSAFE_KEYS.has(name);
}

// ---------------------------------------------------------------------------------------------
// Character classes shared by both directions.

/** Space, tab, CR, LF: the only characters XML calls whitespace. */
function isXmlSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** Is this code point allowed in an XML 1.0 document (the `Char` production)? */
function isXmlChar(cp: number): boolean {
  if (cp < 0x20) return cp === 0x09 || cp === 0x0a || cp === 0x0d;
  if (cp <= 0xd7ff) return true;
  if (cp < 0xe000) return false; // surrogates
  if (cp <= 0xfffd) return true;
  return cp >= 0x10000 && cp <= 0x10ffff;
}

function trimXmlStart(s: string): string {
  let i = 0;
  while (i < s.length && isXmlSpace(s.charCodeAt(i))) i++;
  return i === 0 ? s : s.slice(i);
}

function trimXmlEnd(s: string): string {
  let j = s.length;
  while (j > 0 && isXmlSpace(s.charCodeAt(j - 1))) j--;
  return j === s.length ? s : s.slice(0, j);
}

function isAllXmlSpace(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!isXmlSpace(s.charCodeAt(i))) return false;
  return true;
}

function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const TEXT_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

/**
 * Escape a field value. Tab, CR and LF are written as character references (a parser would
 * otherwise normalise CR, and the decoder trims literal whitespace at the ends), and so are spaces
 * at either end, so that the value survives the decoder's trimming unchanged.
 */
function escapeText(s: string): string {
  const escaped = s.replace(/[&<>"'\t\n\r]/g, (ch) => TEXT_ESCAPES[ch]!);
  return escaped.replace(/^ +| +$/g, (run) => '&#32;'.repeat(run.length));
}

/** Throw unless `value` is a string XML can carry and that fits the field limit. */
function checkEncodable(value: unknown, path: string): string {
  if (typeof value !== 'string') throw new QdpEncodeError(`expected a string, got ${typeof value}`, path);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    let cp = c;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < value.length ? value.charCodeAt(i + 1) : 0;
      if (d < 0xdc00 || d > 0xdfff) throw new QdpEncodeError(`unpaired surrogate at index ${i}`, path);
      cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      i++;
    }
    if (!isXmlChar(cp)) {
      throw new QdpEncodeError(
        `character U+${cp.toString(16).padStart(4, '0')} cannot be carried in XML`,
        path,
      );
    }
  }
  if (codePointLength(value) > QDP_MAX_FIELD_CHARS) {
    throw new QdpEncodeError(`longer than ${QDP_MAX_FIELD_CHARS} characters`, path);
  }
  return value;
}

function element(name: string, text: string): string {
  return text === '' ? `<${name}/>` : `<${name}>${escapeText(text)}</${name}>`;
}

function encodeBlock(
  block: 'device' | 'control',
  value: object,
  fields: readonly FieldSpec[],
  byElement: ReadonlyMap<string, FieldSpec>,
  required: readonly string[],
): string {
  if (typeof value !== 'object' || value === null) throw new QdpEncodeError('expected an object', block);
  const record = value as Record<string, unknown>;
  let out = `<${block}>`;
  for (const [el, prop, kind] of fields) {
    const v = record[prop];
    const path = `${block}/${el}`;
    if (v === undefined || v === null) {
      if (required.includes(el)) throw new QdpEncodeError('is required', path);
      continue;
    }
    if (kind === 'text') {
      const s = checkEncodable(v, path);
      if (s === '' && required.includes(el)) throw new QdpEncodeError('must not be empty', path);
      out += element(el, s);
    } else {
      if (typeof v !== 'boolean') throw new QdpEncodeError(`expected a boolean, got ${typeof v}`, path);
      out += element(el, kind === 'bit' ? (v ? '1' : '0') : v ? 'true' : 'false');
    }
  }
  const extra = record['extra'];
  if (extra !== undefined && extra !== null) {
    if (typeof extra !== 'object') throw new QdpEncodeError('expected an object', `${block}/extra`);
    for (const [name, v] of Object.entries(extra as Record<string, unknown>)) {
      const path = `${block}/${name}`;
      if (!isExtraName(name)) throw new QdpEncodeError('not an acceptable element name for an extra', path);
      if (byElement.has(name)) throw new QdpEncodeError('extra repeats a modelled element', path);
      out += element(name, checkEncodable(v, path));
    }
  }
  return `${out}</${block}>`;
}

/** Serialise without the size check (the decoder uses it to measure the canonical form). */
function serialize(packet: QdpPacket): string {
  if (typeof packet !== 'object' || packet === null) throw new QdpEncodeError('packet must be an object');
  let out = '<QDP>';
  if (packet.device !== undefined && packet.device !== null) {
    out += encodeBlock('device', packet.device, DEVICE_FIELDS, DEVICE_BY_ELEMENT, DEVICE_REQUIRED);
  }
  if (packet.control !== undefined && packet.control !== null) {
    out += encodeBlock('control', packet.control, CONTROL_FIELDS, CONTROL_BY_ELEMENT, CONTROL_REQUIRED);
  }
  const refs: unknown = packet.queryRefs ?? [];
  if (!Array.isArray(refs)) throw new QdpEncodeError('expected an array', 'query_ref');
  refs.forEach((ref: unknown, i) => {
    out += element('query_ref', checkEncodable(ref, `query_ref[${i}]`));
  });
  return `${out}</QDP>`;
}

/**
 * Encode a packet as compact UTF-8 XML in the vendor's element order. Empty strings become
 * self-closing elements, undefined fields are left out. Throws QdpEncodeError (QDP_ERR_ENCODE)
 * for a value the decoder would refuse: missing name/type/role/design_code, characters XML
 * cannot carry, fields over QDP_MAX_FIELD_CHARS, or a datagram over QDP_MAX_PACKET_BYTES.
 */
export function encodeQdp(packet: QdpPacket): Buffer {
  const bytes = Buffer.from(serialize(packet), 'utf8');
  if (bytes.length > QDP_MAX_PACKET_BYTES) {
    throw new QdpEncodeError(`packet is ${bytes.length} bytes, the limit is ${QDP_MAX_PACKET_BYTES}`);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Decoding, step 2: UTF-8

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Offset of the first byte that does not start a well-formed UTF-8 sequence, or -1. */
function firstBadUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes that follow a lead byte; the second one has a narrower range for some
    // leads (no overlong forms, no surrogates, nothing above U+10FFFF).
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) need = 2;
    else if (c >= 0xf0 && c <= 0xf4) need = 3;
    else return i;
    if (c === 0xe0) lo = 0xa0;
    else if (c === 0xed) hi = 0x9f;
    else if (c === 0xf0) lo = 0x90;
    else if (c === 0xf4) hi = 0x8f;
    const second = b[i + 1];
    if (second === undefined || second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const cont = b[i + k];
      if (cont === undefined || cont < 0x80 || cont > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Decoding, steps 3 and 4: our own markup scan (DTDs, references, characters, text outside the root)

interface ScanResult {
  /** First DTD-ish problem (QDP_ERR_ENTITY); wins over any syntax problem. */
  entity?: { at: number; reason: string };
  /** First syntax problem the library validator would not catch (QDP_ERR_BAD_XML). */
  bad?: { at: number; reason: string };
}

const PREDEFINED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const REFERENCE_RE = /&([^\s&;<>"']{1,64});/y;

/** Check the reference starting at `at` (text[at] === '&'). Returns its length, or a problem. */
function checkReference(text: string, at: number): { length: number } | { entity: string } | { bad: string } {
  REFERENCE_RE.lastIndex = at;
  const m = REFERENCE_RE.exec(text);
  if (!m) return { bad: "'&' that does not start a reference (write &amp;)" };
  const body = m[1]!;
  if (body.startsWith('#')) {
    const cp = /^#x[0-9A-Fa-f]+$/.test(body)
      ? Number.parseInt(body.slice(2), 16)
      : /^#[0-9]+$/.test(body)
        ? Number.parseInt(body.slice(1), 10)
        : NaN;
    if (Number.isNaN(cp)) return { bad: `malformed character reference &${body};` };
    if (!isXmlChar(cp)) return { bad: `character reference &${body}; names a character XML forbids` };
    return { length: m[0].length };
  }
  if (!Object.hasOwn(PREDEFINED_ENTITIES, body))
    return { entity: `reference to undeclared entity &${body};` };
  return { length: m[0].length };
}

/**
 * One linear pass over the text. Skips comments, CDATA sections and processing instructions the
 * same way the parser does (first terminator wins), refuses every markup declaration (`<!DOCTYPE`,
 * `<!ENTITY`, ...), checks each `&` reference, each character, text outside the root element,
 * `]]>` in content, `<` inside a tag, and the nesting depth. Anything it reports stops decoding
 * before the library sees the text.
 */
function scanMarkup(text: string): ScanResult {
  const result: ScanResult = {};
  const bad = (at: number, reason: string): void => {
    result.bad ??= { at, reason };
  };
  const n = text.length;
  let depth = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x3c /* < */) {
      if (text.startsWith('<!--', i)) {
        const end = text.indexOf('-->', i + 4);
        if (end < 0) {
          bad(i, 'comment is not closed');
          return result;
        }
        checkChars(text, i + 4, end, bad);
        i = end + 3;
        continue;
      }
      if (text.startsWith('<![CDATA[', i)) {
        const end = text.indexOf(']]>', i + 9);
        if (end < 0) {
          bad(i, 'CDATA section is not closed');
          return result;
        }
        if (depth === 0) bad(i, 'CDATA section outside the root element');
        checkChars(text, i + 9, end, bad);
        i = end + 3;
        continue;
      }
      if (text.startsWith('<!', i)) {
        const next = text.charCodeAt(i + 2);
        if ((next >= 0x41 && next <= 0x5a) || (next >= 0x61 && next <= 0x7a) || next === 0x5b) {
          const word = /^<!\[?[A-Za-z]*/.exec(text.slice(i, i + 16))![0];
          result.entity = { at: i, reason: `markup declarations are refused (found '${word}')` };
          return result;
        }
        bad(i, "'<!' that starts neither a comment nor a CDATA section");
        i += 2;
        continue;
      }
      if (text.startsWith('<?', i)) {
        const end = text.indexOf('?>', i + 1);
        if (end < 0) {
          bad(i, 'processing instruction is not closed');
          return result;
        }
        checkChars(text, i + 2, end, bad);
        i = end + 2;
        continue;
      }
      // A start or end tag: runs to the first '>' outside quotes; a '<' inside it is an error.
      let j = i + 1;
      let quote = 0;
      let stop = -1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x3c) {
          stop = j;
          break;
        }
        if (quote !== 0) {
          if (d === quote) quote = 0;
          else if (d === 0x26 /* & */) {
            const ref = checkReference(text, j);
            if ('entity' in ref) {
              result.entity = { at: j, reason: ref.entity };
              return result;
            }
            if ('bad' in ref) bad(j, ref.bad);
          } else if (!isXmlChar(d) && !(d >= 0xd800 && d <= 0xdfff)) bad(j, illegalChar(d));
        } else if (d === 0x22 || d === 0x27) quote = d;
        else if (d === 0x3e /* > */) break;
        else if (!isXmlChar(d) && !(d >= 0xd800 && d <= 0xdfff)) bad(j, illegalChar(d));
        j++;
      }
      if (stop >= 0) {
        bad(stop, "'<' inside a tag");
        i = stop;
        continue;
      }
      if (j >= n) {
        bad(i, 'tag is not closed');
        return result;
      }
      if (text.charCodeAt(i + 1) === 0x2f /* / */) depth--;
      else if (text.charCodeAt(j - 1) !== 0x2f) {
        depth++;
        if (depth > MAX_DEPTH) bad(i, `elements nested deeper than ${MAX_DEPTH} levels`);
      }
      i = j + 1;
      continue;
    }
    if (c === 0x26 /* & */) {
      const ref = checkReference(text, i);
      if ('entity' in ref) {
        result.entity = { at: i, reason: ref.entity };
        return result;
      }
      if ('bad' in ref) {
        bad(i, ref.bad);
        i++;
        continue;
      }
      if (depth <= 0) bad(i, 'text outside the root element');
      i += ref.length;
      continue;
    }
    if (c === 0x5d /* ] */ && text.startsWith(']]>', i)) bad(i, "']]>' is not allowed in text");
    else if (depth <= 0 && !isXmlSpace(c)) bad(i, 'text outside the root element');
    else if (!isXmlChar(c) && !(c >= 0xd800 && c <= 0xdfff)) bad(i, illegalChar(c));
    i++;
  }
  return result;
}

function illegalChar(c: number): string {
  return `character U+${c.toString(16).padStart(4, '0')} is not allowed in XML`;
}

/** Check [from, to) for characters XML forbids. Surrogates are always paired after UTF-8 decoding. */
function checkChars(text: string, from: number, to: number, bad: (at: number, reason: string) => void): void {
  for (let k = from; k < to; k++) {
    const c = text.charCodeAt(k);
    if (!isXmlChar(c) && !(c >= 0xd800 && c <= 0xdfff)) return bad(k, illegalChar(c));
  }
}

/** Character index of the validator's (1-based) line/column; lines end at LF or CRLF as it counts them. */
function lineColToIndex(text: string, line: number, col: number): number {
  let index = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', index);
    if (nl < 0) return text.length;
    index = nl + 1;
  }
  return Math.min(text.length, index + Math.max(0, col - 1));
}

// ---------------------------------------------------------------------------------------------
// Decoding, steps 5 and 6: the parsed tree to a typed packet

const TEXT = '#text';
const CDATA = '#cdata';
/**
 * Every element name is prefixed before fast-xml-parser uses it as an object key. That stops the
 * library from renaming (`toString` -> `__toString`) or refusing (`constructor`) element names,
 * and no element can collide with the `#text` / `#cdata` keys. The prefix is a character no XML
 * name contains, so the transform can be idempotent: fast-xml-parser 5.12 applies
 * `transformTagName` twice to self-closing elements (`<lan_b_ip/>`).
 */
const TAG = '<';

const parser = new XMLParser({
  preserveOrder: true, // every element is its own node: duplicates, mixed content and order are visible
  ignoreAttributes: true,
  parseTagValue: false, // never turn '0012' or '1e5' into numbers
  processEntities: false, // no DTD entities; we decode the five predefined ones and char refs ourselves
  htmlEntities: false,
  trimValues: false, // we trim XML whitespace only (String.trim would also eat U+00A0 and friends)
  cdataPropName: CDATA,
  commentPropName: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  captureMetaData: true, // start index of each element, for BAD_FIELD offsets
  transformTagName: (name: string) => (name.startsWith(TAG) ? name : TAG + name),
});

const META = XMLParser.getMetaDataSymbol() as unknown as symbol;

type XNode = Record<string, unknown>;

interface Located {
  children: XNode[];
  /** Character index of the element's '<' in the text, or -1. */
  at: number;
}

/** Turns character indexes into byte offsets (BOM included) for error reports; -1 stays -1. */
type ByteOffset = (charIndex: number) => number;

function elementName(node: XNode): string | undefined {
  for (const key of Object.keys(node)) if (key.startsWith(TAG)) return key.slice(TAG.length);
  return undefined;
}

function located(node: XNode, name: string): Located {
  const children = node[TAG + name];
  const meta = (node as Record<symbol, unknown>)[META] as { startIndex?: unknown } | undefined;
  const at = typeof meta?.startIndex === 'number' ? meta.startIndex : -1;
  return { children: Array.isArray(children) ? (children as XNode[]) : [], at };
}

const REF_DECODE_RE = /&(?:#x([0-9A-Fa-f]+)|#([0-9]+)|(amp|lt|gt|quot|apos));/g;

/** Decode references in text the scan has already checked (so every '&' starts a legal one). */
function decodeReferences(raw: string): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(REF_DECODE_RE, (_m, hex: string | undefined, dec: string | undefined, name?: string) =>
    hex !== undefined
      ? String.fromCodePoint(Number.parseInt(hex, 16))
      : dec !== undefined
        ? String.fromCodePoint(Number.parseInt(dec, 10))
        : PREDEFINED_ENTITIES[name!]!,
  );
}

/**
 * The text of an element that must hold text only. Literal XML whitespace at either end is
 * dropped; whitespace written as a character reference or inside CDATA is kept.
 */
function fieldText(el: Located, path: string, byteAt: ByteOffset): string {
  const fail = (reason: string): never => {
    throw new QdpDecodeError('QDP_ERR_BAD_FIELD', `${path}: ${reason}`, byteAt(el.at), path);
  };
  const last = el.children.length - 1;
  let out = '';
  el.children.forEach((child, i) => {
    if (TEXT in child) {
      let raw = String(child[TEXT]);
      if (i === 0) raw = trimXmlStart(raw);
      if (i === last) raw = trimXmlEnd(raw);
      out += decodeReferences(raw);
    } else if (CDATA in child) {
      const parts = child[CDATA] as XNode[];
      for (const part of parts) out += String(part[TEXT] ?? '');
    } else {
      fail(`expected text, found element <${elementName(child) ?? '?'}>`);
    }
  });
  if (codePointLength(out) > QDP_MAX_FIELD_CHARS) fail(`longer than ${QDP_MAX_FIELD_CHARS} characters`);
  return out;
}

/** The element children of a container, by name, refusing duplicates and stray text. */
function childElements(el: Located, path: string, byteAt: ByteOffset): Map<string, Located> {
  const out = new Map<string, Located>();
  for (const child of el.children) {
    if (TEXT in child || CDATA in child) {
      const raw =
        TEXT in child ? String(child[TEXT]) : (child[CDATA] as XNode[]).map((p) => p[TEXT]).join('');
      if (!isAllXmlSpace(raw) || CDATA in child) {
        throw new QdpDecodeError(
          'QDP_ERR_BAD_FIELD',
          `${path}: text is not allowed here`,
          byteAt(el.at),
          path,
        );
      }
      continue;
    }
    const name = elementName(child);
    if (name === undefined) continue;
    const sub = located(child, name);
    if (out.has(name)) {
      throw new QdpDecodeError(
        'QDP_ERR_BAD_FIELD',
        `${path}/${name}: appears more than once`,
        byteAt(sub.at),
        `${path}/${name}`,
      );
    }
    out.set(name, sub);
  }
  return out;
}

function parseBool(text: string, path: string, el: Located, byteAt: ByteOffset): boolean {
  if (text === '1' || text === 'true') return true;
  if (text === '0' || text === 'false') return false;
  throw new QdpDecodeError(
    'QDP_ERR_BAD_FIELD',
    `${path}: expected 1, 0, true or false, got '${text.slice(0, 32)}'`,
    byteAt(el.at),
    path,
  );
}

function decodeBlock(
  block: 'device' | 'control',
  el: Located,
  byElement: ReadonlyMap<string, FieldSpec>,
  required: readonly string[],
  byteAt: ByteOffset,
): Record<string, unknown> {
  const children = childElements(el, block, byteAt);
  const out: Record<string, unknown> = {};
  let extra: Record<string, string> | undefined;
  for (const [name, child] of children) {
    const path = `${block}/${name}`;
    const spec = byElement.get(name);
    if (!spec) {
      if (!isExtraName(name)) continue; // cannot be carried safely: dropped
      (extra ??= {})[name] = fieldText(child, path, byteAt);
      continue;
    }
    const text = fieldText(child, path, byteAt);
    const [, prop, kind] = spec;
    if (kind === 'text') {
      if (text === '' && required.includes(name)) {
        throw new QdpDecodeError('QDP_ERR_BAD_FIELD', `${path}: must not be empty`, byteAt(child.at), path);
      }
      out[prop] = text;
    } else {
      out[prop] = parseBool(text, path, child, byteAt);
    }
  }
  for (const name of required) {
    if (!children.has(name)) {
      const path = `${block}/${name}`;
      throw new QdpDecodeError('QDP_ERR_BAD_FIELD', `${path}: missing`, byteAt(el.at), path);
    }
  }
  if (extra) out['extra'] = extra;
  return out;
}

/**
 * Decode one QDP datagram. Accepts every packet shape seen in the field (Core, peripheral, the
 * sparse CR-separated hobby form, query-only). Checks run in this order and the first failure is
 * thrown as QdpDecodeError: size (QDP_ERR_TOO_LARGE), UTF-8 (QDP_ERR_ENCODING), DTDs and entity
 * references (QDP_ERR_ENTITY), well-formedness (QDP_ERR_BAD_XML), a single `<QDP>` root
 * (QDP_ERR_NOT_QDP), then the fields (QDP_ERR_BAD_FIELD).
 */
export function decodeQdp(bytes: Uint8Array): QdpPacket {
  if (bytes.length > QDP_MAX_PACKET_BYTES) {
    throw new QdpDecodeError(
      'QDP_ERR_TOO_LARGE',
      `datagram is ${bytes.length} bytes, the limit is ${QDP_MAX_PACKET_BYTES}`,
      QDP_MAX_PACKET_BYTES,
    );
  }

  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new QdpDecodeError('QDP_ERR_ENCODING', 'not valid UTF-8', firstBadUtf8(bytes));
  }
  const bom = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const byteAt: ByteOffset = (index) =>
    index < 0 ? -1 : bom + Buffer.byteLength(text.slice(0, index), 'utf8');

  const scan = scanMarkup(text);
  if (scan.entity) throw new QdpDecodeError('QDP_ERR_ENTITY', scan.entity.reason, byteAt(scan.entity.at));
  if (scan.bad) throw new QdpDecodeError('QDP_ERR_BAD_XML', scan.bad.reason, byteAt(scan.bad.at));

  const verdict = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (verdict !== true) {
    const { msg, line, col } = verdict.err;
    throw new QdpDecodeError('QDP_ERR_BAD_XML', msg, byteAt(lineColToIndex(text, line ?? 1, col ?? 1)));
  }

  let tree: XNode[];
  try {
    tree = parser.parse(text) as XNode[];
  } catch (err) {
    throw new QdpDecodeError('QDP_ERR_BAD_XML', `parser refused the packet: ${(err as Error).message}`);
  }

  const roots = tree.filter((node) => elementName(node) !== undefined);
  if (roots.length !== 1) {
    throw new QdpDecodeError('QDP_ERR_NOT_QDP', `expected one root element, found ${roots.length}`);
  }
  const rootName = elementName(roots[0]!)!;
  const root = located(roots[0]!, rootName);
  if (rootName !== 'QDP') {
    throw new QdpDecodeError(
      'QDP_ERR_NOT_QDP',
      `root element is <${rootName.slice(0, 32)}>, not <QDP>`,
      byteAt(root.at),
    );
  }

  const packet: QdpPacket = { queryRefs: [] };
  for (const child of root.children) {
    const name = elementName(child);
    if (name !== 'device' && name !== 'control' && name !== 'query_ref') continue; // text, unknown: ignored
    const el = located(child, name);
    if (name === 'query_ref') {
      packet.queryRefs.push(fieldText(el, 'query_ref', byteAt));
      continue;
    }
    if (packet[name] !== undefined) {
      throw new QdpDecodeError('QDP_ERR_BAD_FIELD', `${name}: appears more than once`, byteAt(el.at), name);
    }
    if (name === 'device') {
      packet.device = decodeBlock(
        'device',
        el,
        DEVICE_BY_ELEMENT,
        DEVICE_REQUIRED,
        byteAt,
      ) as unknown as QdpDevice;
    } else {
      const control = decodeBlock('control', el, CONTROL_BY_ELEMENT, CONTROL_REQUIRED, byteAt);
      control['primary'] ??= false;
      control['redundant'] ??= false;
      packet.control = control as unknown as QdpControl;
    }
  }

  // Escaping can make the canonical form longer than what was received (a raw `'` becomes
  // `&apos;`); refuse what we could not send back, so that every decoded value re-encodes.
  const canonical = Buffer.byteLength(serialize(packet), 'utf8');
  if (canonical > QDP_MAX_PACKET_BYTES) {
    throw new QdpDecodeError(
      'QDP_ERR_TOO_LARGE',
      `packet would be ${canonical} bytes once re-encoded, the limit is ${QDP_MAX_PACKET_BYTES}`,
    );
  }
  return packet;
}
