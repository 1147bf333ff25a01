/**
 * In-memory DatagramBinding for unit tests: one FakeNetwork per test, many
 * sockets on it. Unicast goes to the socket bound to that address (or the
 * wildcard) and port; multicast goes to every socket bound to the port that
 * joined the group, including the sender's own when loopback is on (as the
 * kernel does). Delivery is synchronous-on-microtask so tests stay ordered.
 */
import type { DatagramBinding, DatagramSocket, RemoteInfo } from './datagram-binding.js';

export interface SentDatagram {
  from: RemoteInfo;
  to: RemoteInfo;
  data: Buffer;
  ttl: number;
  multicastInterface: string | null;
}

function isMulticast(address: string): boolean {
  const first = Number(address.split('.')[0]);
  return first >= 224 && first <= 239;
}

function osError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

class FakeSocket implements DatagramSocket {
  bound: RemoteInfo | null = null;
  closed = false;
  readonly memberships = new Set<string>(); // `${group}@${iface}`
  multicastInterface: string | null = null;
  ttl = 1;
  loopback = true;
  private readonly handlers: Array<(d: Buffer, f: RemoteInfo) => void> = [];
  private readonly errorHandlers: Array<(e: Error) => void> = [];

  constructor(
    private readonly net: FakeNetwork,
    readonly reuseAddr: boolean,
  ) {}

  async bind(port: number, address = '0.0.0.0'): Promise<void> {
    if (this.closed) throw osError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'closed');
    if (address !== '0.0.0.0' && !this.net.hasAddress(address)) throw osError('EADDRNOTAVAIL', address);
    const actualPort = port === 0 ? this.net.ephemeralPort() : port;
    for (const s of this.net.sockets) {
      if (s === this || s.closed || !s.bound || s.bound.port !== actualPort) continue;
      const overlap = s.bound.address === address || s.bound.address === '0.0.0.0' || address === '0.0.0.0';
      if (overlap && !(s.reuseAddr && this.reuseAddr))
        throw osError('EADDRINUSE', `${address}:${actualPort}`);
    }
    this.bound = { address, port: actualPort };
  }

  local(): RemoteInfo {
    if (!this.bound) throw osError('EBADF', 'not bound');
    return { ...this.bound };
  }

  addMembership(group: string, iface: string): void {
    if (!isMulticast(group)) throw osError('EINVAL', group);
    if (!this.net.hasAddress(iface)) throw osError('ENODEV', iface);
    this.memberships.add(`${group}@${iface}`);
  }

  dropMembership(group: string, iface: string): void {
    if (!this.memberships.delete(`${group}@${iface}`)) throw osError('EADDRNOTAVAIL', group);
  }

  setMulticastInterface(iface: string): void {
    if (!this.net.hasAddress(iface)) throw osError('EADDRNOTAVAIL', iface);
    this.multicastInterface = iface;
  }

  setMulticastTTL(ttl: number): void {
    this.ttl = ttl;
  }

  setMulticastLoopback(on: boolean): void {
    this.loopback = on;
  }

  async send(data: Uint8Array, port: number, address: string): Promise<void> {
    if (this.closed) throw osError('ERR_SOCKET_DGRAM_NOT_RUNNING', 'closed');
    if (!this.bound) await this.bind(0);
    const from = { address: this.sourceAddress(address), port: this.bound!.port };
    const copy = Buffer.from(data);
    this.net.sent.push({
      from,
      to: { address, port },
      data: copy,
      ttl: this.ttl,
      multicastInterface: this.multicastInterface,
    });
    this.net.deliver(this, from, { address, port }, copy);
  }

  private sourceAddress(dest: string): string {
    if (this.bound && this.bound.address !== '0.0.0.0') return this.bound.address;
    if (isMulticast(dest) && this.multicastInterface) return this.multicastInterface;
    return this.net.addresses[0] ?? '127.0.0.1';
  }

  onMessage(handler: (data: Buffer, from: RemoteInfo) => void): void {
    this.handlers.push(handler);
  }

  onError(handler: (err: Error) => void): void {
    this.errorHandlers.push(handler);
  }

  receive(data: Buffer, from: RemoteInfo): void {
    queueMicrotask(() => {
      if (this.closed) return;
      for (const h of this.handlers) h(Buffer.from(data), { ...from });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export class FakeNetwork implements DatagramBinding {
  readonly sockets: FakeSocket[] = [];
  readonly sent: SentDatagram[] = [];
  private nextEphemeral = 40000;

  /** `addresses`: the local interface addresses that exist on this fake host. */
  constructor(readonly addresses: string[] = ['127.0.0.1']) {}

  createUdp4(options: { reuseAddr: boolean }): DatagramSocket {
    const s = new FakeSocket(this, options.reuseAddr);
    this.sockets.push(s);
    return s;
  }

  hasAddress(address: string): boolean {
    return this.addresses.includes(address);
  }

  ephemeralPort(): number {
    return this.nextEphemeral++;
  }

  /** Inject a datagram as if it came from elsewhere on the network. */
  inject(from: RemoteInfo, to: RemoteInfo, data: Uint8Array): void {
    this.deliver(null, from, to, Buffer.from(data));
  }

  deliver(sender: FakeSocket | null, from: RemoteInfo, to: RemoteInfo, data: Buffer): void {
    for (const s of this.sockets) {
      if (s.closed || !s.bound || s.bound.port !== to.port) continue;
      if (isMulticast(to.address)) {
        const joined = [...s.memberships].some((m) => m.startsWith(`${to.address}@`));
        if (!joined) continue;
        if (sender && !sender.loopback) continue;
      } else if (s.bound.address !== '0.0.0.0' && s.bound.address !== to.address) {
        continue;
      }
      s.receive(data, from);
    }
  }
}
