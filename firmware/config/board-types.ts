/**
 * The board configuration: one JSON file per board under board-configs/,
 * validated against board-configs/board.schema.json, parsed once at start,
 * deep-frozen. Everything hardware-specific the runtime needs lives here.
 */

export interface LanConfig {
  /** Linux interface name ('eth0', 'end0', 'lo' for the virtual board). */
  interface: string;
  /**
   * A fixed IPv4 address to use on this interface instead of the addresses the
   * kernel lists (the virtual board uses 127.0.0.N on lo, which the kernel does
   * not list per address).
   */
  address?: string;
}

export interface AlsaDeviceConfig {
  /** ALSA PCM name, e.g. 'hw:CARD=sndrpihifiberry,DEV=0', or 'virtual'. */
  device: string;
  /** 1..16. */
  channels: number;
  sampleFormat: 'S16_LE' | 'S24_3LE' | 'S24_LE' | 'S32_LE' | 'FLOAT_LE';
  sampleRate: 48000;
  /** ALSA period time in µs (125..100000), passed as `--period-time`. */
  periodTimeUs: number;
  /** ALSA buffer time in µs (250..1000000, at least two periods), passed as `--buffer-time`. */
  bufferTimeUs: number;
}

export interface AudioConfig {
  /** 'alsa' for a real card; 'virtual' = tone/file source and recording sink. */
  binding: 'alsa' | 'virtual';
  capture: AlsaDeviceConfig | null;
  playback: AlsaDeviceConfig | null;
}

export interface GpioLineConfig {
  /** Control name shown to the Core and in the manager. */
  name: string;
  /** gpiochip label or device ('gpiochip0', 'pinctrl-bcm2711'). */
  chip: string;
  /** Line offset on that chip (BCM number on a Pi), 0..1023; one user per (chip, line). */
  line: number;
  activeLow: boolean;
}

export interface GpioConfig {
  /** 'sysfs' (onoff), 'libgpiod' (gpioset/gpiomon), 'fake' (no hardware). */
  binding: 'sysfs' | 'libgpiod' | 'fake';
  identifyLed: GpioLineConfig | null;
  identifyButton: GpioLineConfig | null;
  contactInputs: GpioLineConfig[];
  contactOutputs: GpioLineConfig[];
}

export interface SerialPortConfig {
  /** Control name; unique (ignoring case) across GPIO lines and serial ports. */
  name: string;
  /** Absolute device path ('/dev/ttyS1'), or 'virtual:<name>' on a virtual board. */
  path: string;
  /** One of the standard rates 300..921600. */
  defaultBaudRate: number;
}

export interface BootConfig {
  selector: 'rpi-tryboot' | 'uboot-env' | 'directory';
}

export interface PtpConfig {
  /** 'hardware' when the NIC has a PHC, 'software' otherwise, 'none' = free-running clock. */
  timestamping: 'hardware' | 'software' | 'none';
  /** PTPv2 domainNumber, 0..255 (AES67 and Q-SYS interop: 0; 1588-2008 reserves 128..255). */
  domain: number;
  /** BMCA priorities, 0..255. Shipped boards use 255/255 so a peripheral never outranks a Core. */
  priority1: number;
  priority2: number;
}

export interface BoardConfig {
  schemaVersion: 1;
  /** Short id, same as the file name without .json. */
  id: string;
  /** Human model name, e.g. 'Raspberry Pi 4 Model B + HiFiBerry DAC+ ADC'. */
  model: string;
  /** QDP part_number: the marketing model string. */
  partNumber: string;
  /** QDP platform: product-family code. */
  platform: string;
  isVirtual: boolean;
  /** Default device name is `<hostnamePrefix>-<last 4 hex of LAN A MAC>`. */
  hostnamePrefix: string;
  network: {
    lanA: LanConfig;
    lanB: LanConfig | null;
    /**
     * The OS network stack the Peripheral Manager writes LAN and 802.1X settings for.
     * Absent = 'systemd-networkd' (what the SD-card images run).
     */
    stack?: 'systemd-networkd' | 'ifupdown' | 'networkmanager';
  };
  audio: AudioConfig;
  gpio: GpioConfig;
  serial: SerialPortConfig[];
  boot: BootConfig;
  ptp: PtpConfig;
}
