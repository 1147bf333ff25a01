/**
 * The commands that make the OS use freshly written network files (pure: settings in, argv list
 * out). The binding runs them in order; a step marked `optional` may fail (logged) without
 * failing the change, e.g. stopping a supplicant unit that is not installed.
 *
 *   systemd-networkd  wpa_supplicant-wired@<lanA> restarted (802.1X on) or stopped (off),
 *                     `hostnamectl hostname`, `networkctl reload`, `networkctl reconfigure <ifaces>`.
 *                     The image enables that unit once with `ConditionPathExists=` on its config
 *                     file, so it starts at boot exactly when 802.1X is on and the runtime never
 *                     needs to enable or disable units (polkit: manage-units for that unit only).
 *   ifupdown          `systemctl restart networking.service` (wpa-conf stanzas start supplicants)
 *   networkmanager    `nmcli connection reload`, `nmcli connection up qperiph-<iface>` per LAN
 */
import type { NetBackend } from './render.js';
import type { Dot1xSettings, NetworkSettings } from './types.js';

export interface ApplyStep {
  argv: string[];
  /** A failure of this step is logged and does not fail the change. */
  optional?: boolean;
}

export interface ApplyPlanInput {
  backend: NetBackend;
  interfaces: { lanA: string; lanB: string | null };
  network: NetworkSettings;
  dot1x: Dot1xSettings | null;
}

export function wpaWiredUnit(iface: string): string {
  return `wpa_supplicant-wired@${iface}.service`;
}

export function applySteps(input: ApplyPlanInput): ApplyStep[] {
  const { interfaces, network } = input;
  const ifaces = [interfaces.lanA];
  if (interfaces.lanB && network.lanB) ifaces.push(interfaces.lanB);
  const dot1x = input.dot1x?.enabled === true;
  switch (input.backend) {
    case 'systemd-networkd': {
      const unit = wpaWiredUnit(interfaces.lanA);
      const steps: ApplyStep[] = dot1x
        ? [{ argv: ['systemctl', 'restart', unit] }]
        : [{ argv: ['systemctl', 'stop', unit], optional: true }];
      steps.push(
        { argv: ['hostnamectl', 'hostname', network.hostname] },
        { argv: ['networkctl', 'reload'] },
        { argv: ['networkctl', 'reconfigure', ...ifaces] },
      );
      return steps;
    }
    case 'ifupdown':
      return [{ argv: ['systemctl', 'restart', 'networking.service'] }];
    case 'networkmanager':
      return [
        { argv: ['nmcli', 'connection', 'reload'] },
        ...ifaces.map((i, n) => ({
          argv: ['nmcli', 'connection', 'up', `qperiph-${i}`],
          // LAN B without a cable must not fail the change; LAN A must come up.
          ...(n > 0 ? { optional: true } : {}),
        })),
      ];
  }
}
