/**
 * Typed QDP (Q-SYS Discovery Protocol) packet model. Field names are the
 * camelCase forms of the XML element names (`lan_a_ip` -> `lanAIp`).
 * See docs/protocols.md, section QDP.
 */

/** The `<device>` block: who the sender is. Every field except name/type is optional on decode. */
export interface QdpDevice {
  name: string;
  type: string; // 'ioframe' for peripherals, 'core' for Cores, others exist (hobby: 'ioframe8s')
  platform?: string;
  partNumber?: string;
  ref?: string; // device.<type>.<name>
  isVirtual?: boolean;
  lanAIp?: string; // '' when the element is present but empty
  lanALldp?: string;
  lanBIp?: string;
  lanBLldp?: string;
  auxAIp?: string;
  auxALldp?: string;
  auxBIp?: string;
  auxBLldp?: string;
  webCfgUrl?: string; // Cores
  periphCfgUrl?: string; // peripherals
  secureComm?: 'enabled' | 'disabled' | string;
  httpsServerUp?: boolean;
  /** Elements we do not model, kept as text (name -> value) so nothing heard is lost. */
  extra?: Record<string, string>;
}

/** The `<control>` block: the design the sender belongs to. */
export interface QdpControl {
  role: string;
  designPretty?: string;
  designCode: string;
  /** `<primary>` 1/0 (true/false also read); false when the element is absent. */
  primary: boolean;
  /** `<redundant>` 1/0 (true/false also read); false when the element is absent. */
  redundant: boolean;
  deviceRef?: string;
  ref?: string; // control.<design_code>.<role>[.primary]
  extra?: Record<string, string>;
}

export interface QdpPacket {
  device?: QdpDevice;
  control?: QdpControl;
  /** Every `<query_ref>` in document order (a Core sends one after its device/control). */
  queryRefs: string[];
}

/** Largest datagram we accept; real packets are well under 2 KiB. */
export const QDP_MAX_PACKET_BYTES = 8192;

export const QDP_MULTICAST_GROUP = '224.0.23.175';
export const QDP_ANNOUNCE_PORT = 2467;
export const QDP_LISTEN_PORTS: readonly number[] = Object.freeze([2467, 2468, 2469, 2470]);
export const QDP_SOURCE_PORT = 6504;
