/**
 * Which streams the Core opens with one peripheral, as data (pure): the Stream.Open parameters the
 * peripheral gets and the local endpoints the Core's sender and receiver use.
 *
 * Directions are named from the Core's side. "to peripheral" (Core TX): the peripheral opens a
 * `receive` stream that binds its own address (or joins the AES67 group) on `peripheralRx`; the
 * Core sends there from `coreTxSource` (Q-LAN acks come back on coreTxSource + 1). "from
 * peripheral" (Core RX): the peripheral opens a `send` stream to the Core's address (or the
 * group) on `coreRx`.
 */
import {
  AES67_MAX_CHANNELS,
  QLAN_MAX_CHANNELS,
  qlanFormat,
  type AudioFormat,
} from '../../../firmware/audio/rtp-codec.js';
import { CoreAudioError } from './errors.js';

export type PeerFormat = 'qlan' | 'aes67';

export interface PeerPlanOptions {
  /** The peripheral's LAN A address (IPv4). */
  peripheral: string;
  /** The Core's local address (IPv4) its sockets bind. */
  local: string;
  format: PeerFormat;
  /** Channels each way (the peripheral's channels 1..N). Q-LAN 1..16, AES67 1..8. */
  channels: number;
  /** Even port; the plan uses basePort, +2 and +4 (and their RTCP ports +1). */
  basePort: number;
  /** AES67 only: multicast groups; without them AES67 runs unicast like Q-LAN. */
  groups?: { toPeripheral: string; fromPeripheral: string } | null;
}

export interface StreamOpenParams {
  Direction: 'send' | 'receive';
  Format: PeerFormat;
  Address: string;
  Port: number;
  Channels: number[];
}

export interface StreamPlan {
  format: AudioFormat;
  payloadType: number;
  toPeripheral: {
    open: StreamOpenParams;
    destination: { address: string; port: number };
    sourcePort: number;
    /** Set for a multicast destination: the local interface address. */
    multicastInterface: string | null;
  };
  fromPeripheral: {
    open: StreamOpenParams;
    bind: { address: string; port: number; group: string | null };
  };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isMulticastV4(a: string): boolean {
  const first = Number(a.split('.')[0]);
  return first >= 224 && first <= 239;
}

function bad(msg: string): never {
  throw new CoreAudioError('CORE_AUDIO_ERR_BAD_OPTIONS', msg);
}

export function planStreams(o: PeerPlanOptions): StreamPlan {
  if (typeof o.peripheral !== 'string' || !IPV4.test(o.peripheral) || isMulticastV4(o.peripheral))
    bad(`peripheral ${String(o.peripheral)} is not a unicast IPv4 address`);
  if (typeof o.local !== 'string' || !IPV4.test(o.local) || isMulticastV4(o.local))
    bad(`local ${String(o.local)} is not a unicast IPv4 address`);
  if (o.format !== 'qlan' && o.format !== 'aes67') bad(`format ${String(o.format)}`);
  const max = o.format === 'qlan' ? QLAN_MAX_CHANNELS : AES67_MAX_CHANNELS;
  if (!Number.isInteger(o.channels) || o.channels < 1 || o.channels > max)
    bad(`channels ${o.channels} out of 1..${max} for ${o.format}`);
  if (!Number.isInteger(o.basePort) || o.basePort % 2 !== 0 || o.basePort < 1024 || o.basePort + 5 > 65535)
    bad(`basePort ${o.basePort} must be even and 1024..65530`);
  const groups = o.format === 'aes67' ? (o.groups ?? null) : null;
  if (o.format === 'qlan' && o.groups) bad('Q-LAN streams are unicast: no groups');
  if (groups)
    for (const g of [groups.toPeripheral, groups.fromPeripheral])
      if (typeof g !== 'string' || !IPV4.test(g) || !isMulticastV4(g))
        bad(`group ${String(g)} is not IPv4 multicast`);
  const channels = Array.from({ length: o.channels }, (_, i) => i + 1);
  const coreRx = o.basePort;
  const coreTxSource = o.basePort + 2;
  const peripheralRx = o.basePort + 4;
  const format: AudioFormat =
    o.format === 'qlan'
      ? qlanFormat(o.channels)
      : { encoding: 'L24', channels: o.channels, framesPerPacket: 48 };
  const toAddr = groups ? groups.toPeripheral : o.peripheral;
  const fromAddr = groups ? groups.fromPeripheral : o.local;
  return {
    format,
    payloadType: o.format === 'qlan' ? 98 : 96,
    toPeripheral: {
      open: {
        Direction: 'receive',
        Format: o.format,
        Address: toAddr,
        Port: peripheralRx,
        Channels: channels,
      },
      destination: { address: toAddr, port: peripheralRx },
      sourcePort: coreTxSource,
      multicastInterface: groups ? o.local : null,
    },
    fromPeripheral: {
      open: { Direction: 'send', Format: o.format, Address: fromAddr, Port: coreRx, Channels: channels },
      bind: { address: o.local, port: coreRx, group: groups ? groups.fromPeripheral : null },
    },
  };
}
