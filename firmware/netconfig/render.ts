/**
 * Render settings into the files the OS network stack reads (pure: settings in, file list out).
 * Three backends: 'systemd-networkd' (/etc/systemd/network/*.network + wpa_supplicant-wired@),
 * 'ifupdown' (/etc/network/interfaces.d + wpa_supplicant wired) and 'networkmanager' (keyfiles in
 * /etc/NetworkManager/system-connections). Every path is under `root`, so tests point it at a
 * temp directory; on a device root is '/'.
 */
import { join } from 'node:path';
import type { Dot1xSettings, LanSettings, NetworkSettings } from './types.js';

export type NetBackend = 'systemd-networkd' | 'ifupdown' | 'networkmanager';

export interface RenderedFile {
  path: string;
  content: string;
  mode: number;
}

export interface RenderInput {
  root: string;
  backend: NetBackend;
  /** Linux interface names of LAN A and LAN B. */
  interfaces: { lanA: string; lanB: string | null };
  network: NetworkSettings;
  dot1x: Dot1xSettings | null;
}

export function dot1xFilePaths(root: string): { ca: string; cert: string; key: string } {
  const dir = join(root, 'etc/qperiph/8021x');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client-key.pem') };
}

export function wpaSupplicantPath(root: string, iface: string): string {
  return join(root, `etc/wpa_supplicant/qperiph-${iface}.conf`);
}

/** networkd unit for one LAN; the same name the image's first boot writes, so this replaces it. */
export function networkdUnitPath(root: string, iface: string): string {
  return join(root, `etc/systemd/network/20-qperiph-${iface}.network`);
}

/** The file Debian's wpa_supplicant-wired@<iface>.service reads (-Dwired). */
export function wpaWiredPath(root: string, iface: string): string {
  return join(root, `etc/wpa_supplicant/wpa_supplicant-wired-${iface}.conf`);
}

/** wpa_supplicant configuration for wired 802.1X (ap_scan=0, key_mgmt=IEEE8021X). */
export function renderWpaSupplicant(d: Dot1xSettings, root: string): string {
  const p = dot1xFilePaths(root);
  const lines = [
    '# written by qperiph; changes are overwritten',
    'ctrl_interface=/run/wpa_supplicant',
    'ap_scan=0',
    'network={',
    '  key_mgmt=IEEE8021X',
    `  eap=${d.method === 'eap-tls' ? 'TLS' : 'PEAP'}`,
    `  identity="${d.identity}"`,
  ];
  if (d.anonymousIdentity) lines.push(`  anonymous_identity="${d.anonymousIdentity}"`);
  lines.push(`  ca_cert="${p.ca}"`);
  if (d.method === 'eap-tls') {
    lines.push(`  client_cert="${p.cert}"`, `  private_key="${p.key}"`);
  } else {
    lines.push(`  password="${d.password ?? ''}"`, '  phase2="auth=MSCHAPV2"');
  }
  lines.push('  eapol_flags=0', '}', '');
  return lines.join('\n');
}

function ifupdownStanza(iface: string, lan: LanSettings, dns: string[], wpaConf: string | null): string {
  const out = [`auto ${iface}`, `iface ${iface} inet ${lan.mode === 'dhcp' ? 'dhcp' : 'static'}`];
  if (lan.mode === 'static') {
    out.push(`    address ${lan.address}/${lan.prefixLength}`);
    if (lan.gateway) out.push(`    gateway ${lan.gateway}`);
    if (dns.length) out.push(`    dns-nameservers ${dns.join(' ')}`);
  }
  if (wpaConf) out.push('    wpa-driver wired', `    wpa-conf ${wpaConf}`);
  return out.join('\n') + '\n';
}

function networkdUnit(iface: string, lan: LanSettings, dns: string[], dot1x: boolean): string {
  const out = ['# written by qperiph; changes are overwritten'];
  if (dot1x) out.push(`# 802.1X: wpa_supplicant-wired@${iface}.service authenticates the port`);
  out.push('[Match]', `Name=${iface}`, '', '[Network]');
  if (lan.mode === 'dhcp') out.push('DHCP=ipv4');
  else {
    out.push(`Address=${lan.address}/${lan.prefixLength}`);
    if (lan.gateway) out.push(`Gateway=${lan.gateway}`);
  }
  for (const d of dns) out.push(`DNS=${d}`);
  out.push('LinkLocalAddressing=ipv4', 'IPv6AcceptRA=no', '');
  return out.join('\n');
}

function nmKeyfile(
  iface: string,
  lan: LanSettings,
  dns: string[],
  d: Dot1xSettings | null,
  root: string,
): string {
  const out = [
    '[connection]',
    `id=qperiph-${iface}`,
    'type=ethernet',
    `interface-name=${iface}`,
    'autoconnect=true',
    '',
  ];
  out.push('[ethernet]', '');
  if (d) {
    const p = dot1xFilePaths(root);
    out.push('[802-1x]', `eap=${d.method === 'eap-tls' ? 'tls' : 'peap'};`, `identity=${d.identity}`);
    if (d.anonymousIdentity) out.push(`anonymous-identity=${d.anonymousIdentity}`);
    out.push(`ca-cert=${p.ca}`);
    if (d.method === 'eap-tls')
      out.push(`client-cert=${p.cert}`, `private-key=${p.key}`, 'private-key-password-flags=4');
    else out.push('phase2-auth=mschapv2', `password=${d.password ?? ''}`);
    out.push('');
  }
  out.push('[ipv4]');
  if (lan.mode === 'dhcp') out.push('method=auto');
  else {
    out.push(
      'method=manual',
      `address1=${lan.address}/${lan.prefixLength}${lan.gateway ? `,${lan.gateway}` : ''}`,
    );
    if (dns.length) out.push(`dns=${dns.join(';')};`);
  }
  out.push('', '[ipv6]', 'method=ignore', '');
  return out.join('\n');
}

/** Every file for these settings. 802.1X applies to LAN A only. */
export function renderNetworkFiles(input: RenderInput): RenderedFile[] {
  const { root, network, interfaces } = input;
  const d = input.dot1x?.enabled ? input.dot1x : null;
  // networkd: the hostname is set through hostnamed (see applySteps), not by writing /etc/hostname.
  const files: RenderedFile[] =
    input.backend === 'systemd-networkd'
      ? []
      : [{ path: join(root, 'etc/hostname'), content: `${network.hostname}\n`, mode: 0o644 }];
  if (d) {
    const p = dot1xFilePaths(root);
    files.push({ path: p.ca, content: d.caCert.trim() + '\n', mode: 0o644 });
    if (d.method === 'eap-tls') {
      files.push({ path: p.cert, content: (d.clientCert ?? '').trim() + '\n', mode: 0o644 });
      files.push({ path: p.key, content: (d.clientKey ?? '').trim() + '\n', mode: 0o600 });
    }
  }
  const lans: Array<[string, LanSettings, Dot1xSettings | null]> = [[interfaces.lanA, network.lanA, d]];
  if (interfaces.lanB && network.lanB) lans.push([interfaces.lanB, network.lanB, null]);
  if (input.backend === 'systemd-networkd') {
    for (const [iface, lan, dot] of lans) {
      if (dot)
        files.push({ path: wpaWiredPath(root, iface), content: renderWpaSupplicant(dot, root), mode: 0o600 });
      files.push({
        path: networkdUnitPath(root, iface),
        content: networkdUnit(iface, lan, network.dns, dot !== null),
        mode: 0o644,
      });
    }
  } else if (input.backend === 'ifupdown') {
    const stanzas: string[] = ['# written by qperiph; changes are overwritten\n'];
    for (const [iface, lan, dot] of lans) {
      const wpa = dot ? wpaSupplicantPath(root, iface) : null;
      if (dot && wpa) files.push({ path: wpa, content: renderWpaSupplicant(dot, root), mode: 0o600 });
      stanzas.push(ifupdownStanza(iface, lan, network.dns, wpa));
    }
    files.push({
      path: join(root, 'etc/network/interfaces.d/qperiph'),
      content: stanzas.join('\n'),
      mode: 0o644,
    });
  } else {
    for (const [iface, lan, dot] of lans) {
      files.push({
        path: join(root, `etc/NetworkManager/system-connections/qperiph-${iface}.nmconnection`),
        content: nmKeyfile(iface, lan, network.dns, dot, root),
        mode: 0o600,
      });
    }
  }
  return files;
}
