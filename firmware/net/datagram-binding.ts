/**
 * The DatagramBinding seam: UDP sockets as the QDP (and later RTP) shells use
 * them. `createNodeDatagramBinding()` is the real one over node:dgram; the fake
 * (datagram-fake.ts) delivers between sockets of one in-memory network.
 *
 * Contract, obeyed by both: `bind` rejects with the OS error code (EADDRINUSE,
 * EADDRNOTAVAIL) and leaves the socket unusable; `send` resolves once the OS
 * has taken the datagram (the buffer may be reused only after that); messages
 * arriving after `close()` are never delivered.
 */
import dgram from 'node:dgram';

export interface RemoteInfo {
  address: string;
  port: number;
}

export interface DatagramSocket {
  bind(port: number, address?: string): Promise<void>;
  /** Address and port actually bound. */
  local(): RemoteInfo;
  addMembership(group: string, interfaceAddress: string): void;
  dropMembership(group: string, interfaceAddress: string): void;
  setMulticastInterface(interfaceAddress: string): void;
  setMulticastTTL(ttl: number): void;
  setMulticastLoopback(on: boolean): void;
  send(data: Uint8Array, port: number, address: string): Promise<void>;
  onMessage(handler: (data: Buffer, from: RemoteInfo) => void): void;
  onError(handler: (err: Error) => void): void;
  close(): Promise<void>;
}

export interface DatagramBinding {
  createUdp4(options: { reuseAddr: boolean }): DatagramSocket;
}

class NodeDatagramSocket implements DatagramSocket {
  private readonly sock: dgram.Socket;
  private closed = false;

  constructor(reuseAddr: boolean, recvBufferSize?: number) {
    this.sock = dgram.createSocket({
      type: 'udp4',
      reuseAddr,
      ...(recvBufferSize ? { recvBufferSize } : {}),
    });
  }

  bind(port: number, address?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.sock.off('listening', onListening);
        reject(err);
      };
      const onListening = (): void => {
        this.sock.off('error', onError);
        resolve();
      };
      this.sock.once('error', onError);
      this.sock.once('listening', onListening);
      this.sock.bind({ port, address, exclusive: false });
    });
  }

  local(): RemoteInfo {
    const a = this.sock.address();
    return { address: a.address, port: a.port };
  }

  addMembership(group: string, interfaceAddress: string): void {
    this.sock.addMembership(group, interfaceAddress);
  }

  dropMembership(group: string, interfaceAddress: string): void {
    this.sock.dropMembership(group, interfaceAddress);
  }

  setMulticastInterface(interfaceAddress: string): void {
    this.sock.setMulticastInterface(interfaceAddress);
  }

  setMulticastTTL(ttl: number): void {
    this.sock.setMulticastTTL(ttl);
  }

  setMulticastLoopback(on: boolean): void {
    this.sock.setMulticastLoopback(on);
  }

  send(data: Uint8Array, port: number, address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(Object.assign(new Error('socket is closed'), { code: 'ERR_SOCKET_DGRAM_NOT_RUNNING' }));
        return;
      }
      this.sock.send(data, port, address, (err) => (err ? reject(err) : resolve()));
    });
  }

  onMessage(handler: (data: Buffer, from: RemoteInfo) => void): void {
    this.sock.on('message', (msg, rinfo) => {
      if (!this.closed) handler(msg, { address: rinfo.address, port: rinfo.port });
    });
  }

  onError(handler: (err: Error) => void): void {
    this.sock.on('error', handler);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => {
      try {
        this.sock.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

export interface NodeDatagramOptions {
  /** SO_RCVBUF in bytes (RTP at 3000 packets/s overflows the default during a short stall). */
  recvBufferSize?: number;
}

export function createNodeDatagramBinding(options: NodeDatagramOptions = {}): DatagramBinding {
  return { createUdp4: ({ reuseAddr }) => new NodeDatagramSocket(reuseAddr, options.recvBufferSize) };
}
