/**
 * First-boot (and every-boot) provisioning on the device, run by
 * qperiph-firstboot.service before the runtime and sshd. It applies the
 * tester's settings file from the FAT partition when it changed: hostname,
 * LAN (systemd-networkd), Wi-Fi and wired 802.1X (wpa_supplicant), the Core
 * address and root's SSH keys. SSH host keys and the device key are made on
 * the device (ssh-keygen -A in the unit; the runtime makes its own key), never
 * in the image. Every path hangs off `root` so tests point it at a temp dir.
 * Safe to run twice: same settings, same files, nothing else touched.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { parseSettings, SETTINGS_FILE, type DeviceSettings } from './settings.js';

export interface FirstBootOptions {
  /** File-system root ('/' on the device). */
  root: string;
  /** The FAT directory holding qperiph.txt, relative to root. */
  settingsDir: string;
  /** LAN A interface and the hostname prefix (from /etc/qperiph/board.json). */
  lanInterface: string;
  hostnamePrefix: string;
}

export interface FirstBootResult {
  applied: boolean;
  hostname: string;
  error?: string;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return null;
  }
}

async function put(path: string, text: string, mode = 0o644): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, text, { mode });
  await chmod(path, mode);
}

/** `<prefix>-<last 4 hex digits of the MAC>`, or the name from the settings. */
export function deviceHostname(prefix: string, mac: string | null, settingsName: string): string {
  if (settingsName) return settingsName;
  const hex = (mac ?? '').replace(/[^0-9a-f]/gi, '').toLowerCase();
  return `${prefix}-${hex.length >= 4 ? hex.slice(-4) : '0000'}`;
}

function networkdUnit(iface: string, s: DeviceSettings): string {
  const lines = ['# qperiph first boot, from qperiph.txt', '[Match]', `Name=${iface}`, '', '[Network]'];
  if (s.network.mode === 'dhcp') lines.push('DHCP=yes');
  else {
    lines.push(`Address=${s.network.address}/${s.network.prefix}`);
    if (s.network.gateway) lines.push(`Gateway=${s.network.gateway}`);
    for (const d of s.network.dns) lines.push(`DNS=${d}`);
  }
  lines.push('LinkLocalAddressing=ipv4', '');
  return lines.join('\n');
}

export async function runFirstBoot(o: FirstBootOptions): Promise<FirstBootResult> {
  const r = (p: string): string => join(o.root, p);
  const fat = r(o.settingsDir);
  const text = (await readText(join(fat, SETTINGS_FILE))) ?? '';
  const mac = (await readText(r(`sys/class/net/${o.lanInterface}/address`)))?.trim() ?? null;
  let settings: DeviceSettings;
  try {
    settings = parseSettings(text);
  } catch (err) {
    // A bad settings file must not keep the device off the network: keep the last applied state.
    const hostname = (await readText(r('etc/hostname')))?.trim() ?? deviceHostname(o.hostnamePrefix, mac, '');
    return { applied: false, hostname, error: (err as Error).message };
  }
  const hostname = deviceHostname(o.hostnamePrefix, mac, settings.name);
  const stamp = createHash('sha256')
    .update(text)
    .update(`\0${mac ?? ''}`)
    .digest('hex');
  const stampFile = r('var/lib/qperiph-firstboot/applied.sha256');
  if ((await readText(stampFile))?.trim() === stamp) return { applied: false, hostname };

  await put(r('etc/hostname'), `${hostname}\n`);
  await put(
    r('etc/hosts'),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  await put(
    r(`etc/systemd/network/20-qperiph-${o.lanInterface}.network`),
    networkdUnit(o.lanInterface, settings),
  );

  const wpaDir = r('etc/wpa_supplicant');
  if (settings.wifi) {
    await put(
      join(wpaDir, 'wpa_supplicant-wlan0.conf'),
      `ctrl_interface=/run/wpa_supplicant\nnetwork={\n  ssid="${settings.wifi.ssid}"\n  psk="${settings.wifi.psk}"\n  key_mgmt=WPA-PSK SAE\n  ieee80211w=1\n}\n`,
      0o600,
    );
    await put(
      r('etc/systemd/network/30-qperiph-wlan0.network'),
      '[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n',
    );
  }
  if (settings.dot1x) {
    const certDir = r('etc/qperiph/8021x');
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    const cp = async (name: string): Promise<string> => {
      if (!name) return '';
      await copyFile(join(fat, name), join(certDir, name));
      await chmod(join(certDir, name), 0o600);
      return `/etc/qperiph/8021x/${name}`;
    };
    const d = settings.dot1x;
    const body =
      d.eap === 'tls'
        ? [
            `  eap=TLS`,
            `  identity="${d.identity}"`,
            `  ca_cert="${await cp(d.caCert)}"`,
            `  client_cert="${await cp(d.clientCert)}"`,
            `  private_key="${await cp(d.privateKey)}"`,
            ...(d.privateKeyPassword ? [`  private_key_passwd="${d.privateKeyPassword}"`] : []),
          ]
        : [
            `  eap=PEAP`,
            `  identity="${d.identity}"`,
            `  password="${d.password}"`,
            `  phase2="auth=MSCHAPV2"`,
            ...(d.caCert ? [`  ca_cert="${await cp(d.caCert)}"`] : []),
          ];
    await put(
      join(wpaDir, `wpa_supplicant-wired-${o.lanInterface}.conf`),
      [
        'ctrl_interface=/run/wpa_supplicant',
        'ap_scan=0',
        'network={',
        '  key_mgmt=IEEE8021X',
        ...body,
        '}',
        '',
      ].join('\n'),
      0o600,
    );
  }
  await put(r('etc/qperiph/core.json'), `${JSON.stringify({ coreAddress: settings.coreAddress || null })}\n`);
  await mkdir(r('root/.ssh'), { recursive: true, mode: 0o700 });
  await put(r('root/.ssh/authorized_keys'), settings.sshKeys.map((k) => `${k}\n`).join(''), 0o600);
  await put(stampFile, `${stamp}\n`);
  return { applied: true, hostname };
}

async function main(argv: string[]): Promise<number> {
  const root = argv[0] ?? '/';
  const board = JSON.parse((await readText(join(root, 'etc/qperiph/board.json'))) ?? '{}') as {
    hostnamePrefix?: string;
    network?: { lanA?: { interface?: string } };
  };
  const settingsDir = (await readText(join(root, 'etc/qperiph/settings-dir')))?.trim() ?? 'boot/firmware';
  const res = await runFirstBoot({
    root,
    settingsDir,
    lanInterface: board.network?.lanA?.interface ?? 'eth0',
    hostnamePrefix: board.hostnamePrefix ?? 'qperiph',
  });
  process.stdout.write(`${JSON.stringify({ event: 'firstboot', ...res })}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).then(
    (c) => (process.exitCode = c),
    (err: unknown) => {
      process.stderr.write(`qperiph-firstboot: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
