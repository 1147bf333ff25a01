/**
 * Network and 802.1X settings as the manager edits them, and their validation (pure).
 * `validateNetworkSettings` / `validateDot1xSettings` return a normalised copy or a list of
 * problems located by JSON Pointer; nothing is written until a value passes.
 */
import { isIPv4 } from 'node:net';
import { QperiphError } from '../errors.js';

export interface LanSettings {
  mode: 'dhcp' | 'static';
  /** Static only. */
  address?: string;
  prefixLength?: number;
  gateway?: string;
}

export interface NetworkSettings {
  hostname: string;
  dns: string[];
  lanA: LanSettings;
  lanB: LanSettings | null;
}

export interface Dot1xSettings {
  enabled: boolean;
  method: 'peap-mschapv2' | 'eap-tls';
  identity: string;
  anonymousIdentity?: string;
  /** PEAP only. */
  password?: string;
  /** PEM of the CA that signed the authentication server's certificate. */
  caCert: string;
  /** EAP-TLS only: client certificate and private key (PEM). */
  clientCert?: string;
  clientKey?: string;
}

export interface SettingsIssue {
  path: string;
  message: string;
}

export class NetconfigError extends QperiphError {
  declare readonly code: 'NETCONFIG_ERR_INVALID' | 'NETCONFIG_ERR_IO' | 'NETCONFIG_ERR_BUSY';
  readonly issues: readonly SettingsIssue[];
  constructor(
    code: NetconfigError['code'],
    message: string,
    issues: SettingsIssue[] = [],
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.issues = Object.freeze(issues);
  }
}

const HOST_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** Characters that could break out of a quoted value in any of the files we write. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const UNSAFE_RE = /["\\\u0000-\u001f\u007f]/;

export function prefixFromNetmask(mask: string): number | null {
  if (!isIPv4(mask)) return null;
  const n = mask.split('.').reduce((a, p) => ((a << 8) | Number(p)) >>> 0, 0);
  let p = 0;
  while (p < 32 && (n & (0x80000000 >>> p)) !== 0) p++;
  return (p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0) === n ? p : null;
}

export function netmaskFromPrefix(prefix: number): string {
  const n = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

function checkLan(v: unknown, at: string, bad: (p: string, m: string) => void): LanSettings | null {
  if (v === null || typeof v !== 'object') {
    bad(at, 'must be object');
    return null;
  }
  const o = v as Record<string, unknown>;
  if (o['mode'] === 'dhcp') return { mode: 'dhcp' };
  if (o['mode'] !== 'static') {
    bad(`${at}/mode`, "must be 'dhcp' or 'static'");
    return null;
  }
  const address = o['address'];
  const prefix = o['prefixLength'];
  const gateway = o['gateway'];
  if (typeof address !== 'string' || !isIPv4(address)) bad(`${at}/address`, 'must be an IPv4 address');
  if (!Number.isInteger(prefix) || (prefix as number) < 1 || (prefix as number) > 32) {
    bad(`${at}/prefixLength`, 'must be an integer 1..32');
  }
  if (gateway !== undefined && gateway !== '' && (typeof gateway !== 'string' || !isIPv4(gateway))) {
    bad(`${at}/gateway`, 'must be an IPv4 address or empty');
  }
  const out: LanSettings = { mode: 'static', address: address as string, prefixLength: prefix as number };
  if (typeof gateway === 'string' && gateway !== '') out.gateway = gateway;
  return out;
}

export function validateNetworkSettings(value: unknown): NetworkSettings {
  const issues: SettingsIssue[] = [];
  const bad = (path: string, message: string): void => void issues.push({ path, message });
  if (value === null || typeof value !== 'object')
    throw new NetconfigError('NETCONFIG_ERR_INVALID', 'must be object');
  const o = value as Record<string, unknown>;
  const hostname = o['hostname'];
  if (typeof hostname !== 'string' || !HOST_RE.test(hostname)) {
    bad('/hostname', 'must be a hostname label (letters, digits, inner hyphens, at most 63)');
  }
  const dns = o['dns'] ?? [];
  if (!Array.isArray(dns) || dns.length > 3) bad('/dns', 'must be an array of at most 3 addresses');
  else
    dns.forEach(
      (d, i) => (typeof d !== 'string' || !isIPv4(d)) && bad(`/dns/${i}`, 'must be an IPv4 address'),
    );
  const lanA = checkLan(o['lanA'], '/lanA', bad);
  const lanB = o['lanB'] === null || o['lanB'] === undefined ? null : checkLan(o['lanB'], '/lanB', bad);
  if (issues.length > 0) {
    throw new NetconfigError(
      'NETCONFIG_ERR_INVALID',
      `invalid network settings: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`,
      issues,
    );
  }
  return { hostname: hostname as string, dns: dns as string[], lanA: lanA!, lanB };
}

const PEM_CERT_RE = /^\s*(-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*)+$/;
const PEM_KEY_RE =
  /^\s*-----BEGIN (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n:,-]+-----END (?:EC |RSA |ENCRYPTED )?PRIVATE KEY-----\s*$/;

export function validateDot1xSettings(value: unknown): Dot1xSettings {
  const issues: SettingsIssue[] = [];
  const bad = (path: string, message: string): void => void issues.push({ path, message });
  if (value === null || typeof value !== 'object')
    throw new NetconfigError('NETCONFIG_ERR_INVALID', 'must be object');
  const o = value as Record<string, unknown>;
  const str = (k: string, max: number, required: boolean): string | undefined => {
    const v = o[k];
    if (v === undefined || v === '') {
      if (required) bad(`/${k}`, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.length > max || (max <= 256 && UNSAFE_RE.test(v))) {
      bad(
        `/${k}`,
        `must be a string of at most ${max} characters without quotes, backslashes or control characters`,
      );
      return undefined;
    }
    return v;
  };
  if (typeof o['enabled'] !== 'boolean') bad('/enabled', 'must be boolean');
  const method = o['method'];
  if (method !== 'peap-mschapv2' && method !== 'eap-tls')
    bad('/method', "must be 'peap-mschapv2' or 'eap-tls'");
  const enabled = o['enabled'] === true;
  const identity = str('identity', 128, enabled);
  const anonymousIdentity = str('anonymousIdentity', 128, false);
  const password = str('password', 128, enabled && method === 'peap-mschapv2');
  const caCert = str('caCert', 65536, enabled);
  const clientCert = str('clientCert', 65536, enabled && method === 'eap-tls');
  const clientKey = str('clientKey', 65536, enabled && method === 'eap-tls');
  if (caCert && !PEM_CERT_RE.test(caCert)) bad('/caCert', 'must be PEM certificate(s)');
  if (clientCert && !PEM_CERT_RE.test(clientCert)) bad('/clientCert', 'must be PEM certificate(s)');
  if (clientKey && !PEM_KEY_RE.test(clientKey)) bad('/clientKey', 'must be a PEM private key');
  if (issues.length > 0) {
    throw new NetconfigError(
      'NETCONFIG_ERR_INVALID',
      `invalid 802.1X settings: ${issues.map((i) => `${i.path} ${i.message}`).join('; ')}`,
      issues,
    );
  }
  const out: Dot1xSettings = {
    enabled,
    method: method as Dot1xSettings['method'],
    identity: identity ?? '',
    caCert: caCert ?? '',
  };
  if (anonymousIdentity) out.anonymousIdentity = anonymousIdentity;
  if (password) out.password = password;
  if (clientCert) out.clientCert = clientCert;
  if (clientKey) out.clientKey = clientKey;
  return out;
}
