/**
 * Codec for the legacy /cgi-bin XML endpoints (pure). Decoding follows the QDP codec's rules:
 * size limit first, strict UTF-8, no DTD/entity declarations (<! is refused outright), only the
 * five predefined entities and numeric character references, limited depth, then
 * fast-xml-parser with entity processing off on text that already passed those checks.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { QperiphError } from '../errors.js';
import {
  netmaskFromPrefix,
  prefixFromNetmask,
  type LanSettings,
  type NetworkSettings,
} from '../netconfig/types.js';

export const LEGACY_MAX_XML_BYTES = 16 * 1024;
const MAX_DEPTH = 8;

export type LegacyXmlErrorCode =
  | 'LEGACY_ERR_TOO_LARGE'
  | 'LEGACY_ERR_ENCODING'
  | 'LEGACY_ERR_ENTITY'
  | 'LEGACY_ERR_BAD_XML'
  | 'LEGACY_ERR_BAD_FIELD';

export class LegacyXmlError extends QperiphError {
  declare readonly code: LegacyXmlErrorCode;
  readonly offset: number;
  constructor(code: LegacyXmlErrorCode, reason: string, offset = -1) {
    super(code, offset >= 0 ? `${reason} (at byte ${offset})` : reason);
    this.offset = offset;
  }
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeText(s: string): string {
  return s.replace(/&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);/g, (_m, ref: string) => {
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
    return PREDEFINED[ref]!;
  });
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${Object.entries(PREDEFINED).find(([, v]) => v === c)![0]};`);
}

const parser = new XMLParser({
  ignoreAttributes: true,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => name === 'interface',
});

/** Checks before the parser sees anything. Returns the text. */
export function precheckXml(bytes: Uint8Array): string {
  if (bytes.length > LEGACY_MAX_XML_BYTES) {
    throw new LegacyXmlError(
      'LEGACY_ERR_TOO_LARGE',
      `body is ${bytes.length} bytes, the limit is ${LEGACY_MAX_XML_BYTES}`,
      LEGACY_MAX_XML_BYTES,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LegacyXmlError('LEGACY_ERR_ENCODING', 'body is not valid UTF-8');
  }
  const bang = text.indexOf('<!');
  if (bang >= 0) {
    throw new LegacyXmlError(
      'LEGACY_ERR_ENTITY',
      'DTDs, entity declarations, comments and CDATA are not accepted',
      Buffer.byteLength(text.slice(0, bang)),
    );
  }
  const amp = /&(?!(?:#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);)/.exec(text);
  if (amp)
    throw new LegacyXmlError(
      'LEGACY_ERR_ENTITY',
      'only the predefined entities are accepted',
      Buffer.byteLength(text.slice(0, amp.index)),
    );
  let depth = 0;
  for (const m of text.matchAll(/<(\/?)[A-Za-z_][^>]*?(\/?)>/g)) {
    if (m[1]) depth--;
    else if (!m[2]) depth++;
    if (depth > MAX_DEPTH)
      throw new LegacyXmlError(
        'LEGACY_ERR_BAD_XML',
        `elements nested deeper than ${MAX_DEPTH}`,
        Buffer.byteLength(text.slice(0, m.index)),
      );
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new LegacyXmlError('LEGACY_ERR_BAD_XML', valid.err.msg);
  return text;
}

type Node = Record<string, unknown>;

function field(node: Node, name: string, path: string): string {
  const v = node[name];
  if (v === undefined || v === '') return '';
  if (typeof v !== 'string') throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${path}/${name} must be text`);
  const s = decodeText(v);
  if (s.length > 256)
    throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${path}/${name} is longer than 256 characters`);
  return s;
}

/**
 * Decode a `<network_configuration>` body into partial network settings. Interfaces are named
 * 'LAN A' / 'LAN B'; mode 'auto' means DHCP. The result still goes through the netconfig
 * validation before anything is applied.
 */
export function decodeNetworkConfigurationXml(bytes: Uint8Array, current: NetworkSettings): NetworkSettings {
  const text = precheckXml(bytes);
  const doc = parser.parse(text) as Node;
  const root = doc['network_configuration'];
  if (root === undefined || typeof root !== 'object' || root === null) {
    throw new LegacyXmlError('LEGACY_ERR_BAD_XML', 'root element must be <network_configuration>');
  }
  const r = root as Node;
  const hostname = field(r, 'hostname', 'network_configuration') || current.hostname;
  const dns = [
    field(r, 'primary_dns', 'network_configuration'),
    field(r, 'secondary_dns', 'network_configuration'),
  ].filter((d) => d !== '');
  const out: NetworkSettings = {
    hostname,
    dns: dns.length ? dns : current.dns,
    lanA: current.lanA,
    lanB: current.lanB,
  };
  const ifaces = (r['interface'] ?? []) as unknown[];
  ifaces.forEach((raw, i) => {
    const at = `network_configuration/interface[${i}]`;
    if (typeof raw !== 'object' || raw === null)
      throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${at} must be an element`);
    const n = raw as Node;
    const name = field(n, 'name', at);
    const mode = field(n, 'mode', at);
    let lan: LanSettings;
    if (mode === 'auto' || mode === 'dhcp') lan = { mode: 'dhcp' };
    else if (mode === 'static') {
      const mask = field(n, 'netmask', at);
      const prefix = prefixFromNetmask(mask);
      if (prefix === null) throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${at}/netmask is not a netmask`);
      lan = { mode: 'static', address: field(n, 'address', at), prefixLength: prefix };
      const gw = field(n, 'default_route', at);
      if (gw) lan.gateway = gw;
    } else throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${at}/mode must be auto or static`);
    if (name === 'LAN A') out.lanA = lan;
    else if (name === 'LAN B') out.lanB = lan;
    else throw new LegacyXmlError('LEGACY_ERR_BAD_FIELD', `${at}/name must be 'LAN A' or 'LAN B'`);
  });
  return out;
}

export interface LegacyStatus {
  deviceName: string;
  modelPretty: string;
  firmwareVersion: string;
  mac: string;
  prettyName: string;
  idMode: boolean;
  interfaces: Array<{
    name: string;
    mode: 'auto' | 'static';
    address: string;
    mask: string;
    gateway: string;
  }>;
}

export function encodeStatusXml(s: LegacyStatus): string {
  const e = escapeXml;
  const ifaces = s.interfaces
    .map(
      (i) =>
        `<interface><name>${e(i.name)}</name><mode>${i.mode}</mode><address>${e(i.address)}</address><mask>${e(i.mask)}</mask><gateway>${e(i.gateway)}</gateway></interface>`,
    )
    .join('');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<status>' +
    `<device_name>${e(s.deviceName)}</device_name><device_model_pretty>${e(s.modelPretty)}</device_model_pretty>` +
    `<firmware_version>${e(s.firmwareVersion)}</firmware_version><mac_address>${e(s.mac)}</mac_address>` +
    `<pretty_name>${e(s.prettyName)}</pretty_name><id_mode>${s.idMode ? 'on' : 'off'}</id_mode>${ifaces}</status>\n`
  );
}

export { netmaskFromPrefix };
