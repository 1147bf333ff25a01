/**
 * The settings file a tester edits on the FAT partition (`qperiph.txt`), from
 * any laptop: `key = value` lines, `#` comments, CRLF or LF, UTF-8 with or
 * without a BOM. Pure: text in, frozen settings out; the first problem throws
 * IMAGE_ERR_SETTINGS with its line number as `offset`.
 */
import { isIPv4 } from 'node:net';
import { ImageError } from './errors.js';

export interface DeviceSettings {
  /** Device name; empty = `<hostnamePrefix>-<last 4 hex of the LAN MAC>`. */
  name: string;
  network:
    { mode: 'dhcp' } | { mode: 'static'; address: string; prefix: number; gateway: string; dns: string[] };
  wifi: { ssid: string; psk: string } | null;
  /** Wired 802.1X on LAN A. Certificate paths are file names on the same FAT partition. */
  dot1x:
    | {
        eap: 'tls';
        identity: string;
        caCert: string;
        clientCert: string;
        privateKey: string;
        privateKeyPassword: string;
      }
    | { eap: 'peap'; identity: string; password: string; caCert: string }
    | null;
  coreAddress: string;
  sshKeys: string[];
}

const KEYS = new Set([
  'name',
  'network',
  'address',
  'gateway',
  'dns',
  'wifi_ssid',
  'wifi_psk',
  'eap',
  'eap_identity',
  'eap_password',
  'eap_ca_cert',
  'eap_client_cert',
  'eap_private_key',
  'eap_private_key_password',
  'core_address',
  'ssh_key',
]);

export const SETTINGS_FILE = 'qperiph.txt';

/** The file the image ships: every key present, explained, empty where unset. */
export function renderSettingsTemplate(model: string): string {
  return [
    `# qperiph device settings (${model})`,
    '# Edit on any computer, eject the card, boot the device. Applied on every boot',
    '# when this file changed. Lines are "key = value"; "#" starts a comment.',
    '',
    '# Device name shown to the Core; empty = <model prefix>-<last 4 hex digits of the MAC>',
    'name =',
    '',
    '# LAN A: "dhcp", or "static" with address (CIDR), gateway and dns (comma separated)',
    'network = dhcp',
    'address =',
    'gateway =',
    'dns =',
    '',
    '# Wi-Fi (WPA2/WPA3 personal); leave wifi_ssid empty for none',
    'wifi_ssid =',
    'wifi_psk =',
    '',
    '# Wired 802.1X on LAN A: eap = none | tls | peap. Certificate and key files go on',
    '# this partition; give their file names here.',
    'eap = none',
    'eap_identity =',
    'eap_password =',
    'eap_ca_cert =',
    'eap_client_cert =',
    'eap_private_key =',
    'eap_private_key_password =',
    '',
    '# The Core to talk to (IPv4 address or host name); empty = discover by QDP',
    'core_address =',
    '',
    '# SSH public keys for root (repeat the line for more keys). There is no password:',
    '# without a key here, nobody can log in over SSH.',
    'ssh_key =',
    '',
  ].join('\r\n');
}

function fail(line: number, message: string): never {
  throw new ImageError('IMAGE_ERR_SETTINGS', `${SETTINGS_FILE} line ${line}: ${message}`, { offset: line });
}

const HOST_RE =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const FILE_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function parseSettings(text: string): Readonly<DeviceSettings> {
  const raw = new Map<string, { value: string; line: number }>();
  const sshKeys: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((l, i) => {
    const line = i + 1;
    const s = l.trim();
    if (s === '' || s.startsWith('#')) return;
    const eq = s.indexOf('=');
    if (eq <= 0) fail(line, `expected "key = value", got ${JSON.stringify(s.slice(0, 40))}`);
    const key = s.slice(0, eq).trim().toLowerCase();
    const value = s.slice(eq + 1).trim();
    if (!KEYS.has(key)) fail(line, `unknown key '${key}'`);
    if (
      /[\0\n\r"\\]/.test(value) &&
      key !== 'wifi_psk' &&
      key !== 'eap_password' &&
      key !== 'eap_private_key_password'
    ) {
      fail(line, `${key}: quotes and backslashes are not allowed`);
    }
    if (key === 'ssh_key') {
      if (value === '') return;
      if (
        !/^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/.test(
          value,
        )
      ) {
        fail(line, 'ssh_key is not an OpenSSH public key line');
      }
      sshKeys.push(value);
      return;
    }
    if (raw.has(key)) fail(line, `'${key}' given twice (first on line ${raw.get(key)?.line})`);
    raw.set(key, { value, line });
  });
  const get = (k: string): string => raw.get(k)?.value ?? '';
  const at = (k: string): number => raw.get(k)?.line ?? 0;

  const name = get('name');
  if (name && !NAME_RE.test(name)) fail(at('name'), 'name: letters, digits and "-" only, at most 63');

  let network: DeviceSettings['network'] = { mode: 'dhcp' };
  const mode = get('network') || 'dhcp';
  if (mode === 'static') {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(get('address'));
    if (!m || !isIPv4(m[1] as string) || Number(m[2]) > 32)
      fail(at('address') || at('network'), 'static network needs address = A.B.C.D/N');
    const gateway = get('gateway');
    if (gateway && !isIPv4(gateway)) fail(at('gateway'), 'gateway is not an IPv4 address');
    const dns = get('dns')
      .split(',')
      .map((d) => d.trim())
      .filter(Boolean);
    for (const d of dns) if (!isIPv4(d)) fail(at('dns'), `dns: '${d}' is not an IPv4 address`);
    network = { mode: 'static', address: m[1] as string, prefix: Number(m[2]), gateway, dns };
  } else if (mode !== 'dhcp') {
    fail(at('network'), `network must be dhcp or static, not '${mode}'`);
  }

  let wifi: DeviceSettings['wifi'] = null;
  if (get('wifi_ssid')) {
    const psk = get('wifi_psk');
    if (psk.length < 8 || psk.length > 63)
      fail(at('wifi_psk') || at('wifi_ssid'), 'wifi_psk must be 8..63 characters');
    if (/["\\]/.test(psk) || /["\\]/.test(get('wifi_ssid')))
      fail(at('wifi_ssid'), 'quotes and backslashes are not supported in Wi-Fi settings');
    wifi = { ssid: get('wifi_ssid'), psk };
  }

  let dot1x: DeviceSettings['dot1x'] = null;
  const eap = get('eap') || 'none';
  const fileOf = (k: string, required: boolean): string => {
    const v = get(k);
    if (!v && required) fail(at('eap'), `eap = ${eap} needs ${k}`);
    if (v && !FILE_RE.test(v)) fail(at(k), `${k}: a plain file name on this partition, not a path`);
    return v;
  };
  if (eap === 'tls' || eap === 'peap') {
    const identity = get('eap_identity');
    if (!identity) fail(at('eap'), `eap = ${eap} needs eap_identity`);
    if (/["\\]/.test(get('eap_password') + get('eap_private_key_password')))
      fail(at('eap'), 'quotes and backslashes are not supported in 802.1X secrets');
    dot1x =
      eap === 'tls'
        ? {
            eap,
            identity,
            caCert: fileOf('eap_ca_cert', true),
            clientCert: fileOf('eap_client_cert', true),
            privateKey: fileOf('eap_private_key', true),
            privateKeyPassword: get('eap_private_key_password'),
          }
        : { eap, identity, password: get('eap_password'), caCert: fileOf('eap_ca_cert', false) };
    if (dot1x.eap === 'peap' && !dot1x.password) fail(at('eap'), 'eap = peap needs eap_password');
  } else if (eap !== 'none') {
    fail(at('eap'), `eap must be none, tls or peap, not '${eap}'`);
  }

  const coreAddress = get('core_address');
  if (coreAddress && !isIPv4(coreAddress) && !HOST_RE.test(coreAddress))
    fail(at('core_address'), 'core_address is not an IPv4 address or host name');

  return Object.freeze({ name, network, wifi, dot1x, coreAddress, sshKeys });
}
