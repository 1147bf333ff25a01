/**
 * The audio engine's real DatagramBinding: the same contract as firmware/net/datagram-binding.ts,
 * plus a large receive buffer (RTP at 3000 packets/s overflows the 208 kB default in a 30 ms
 * stall of the event loop). Kept here so the shared binding stays untouched.
 */
import dgram from 'node:dgram';
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../net/datagram-binding.js';

class AudioSocket implements DatagramSocket {
  private readonly sock: dgram.Socket;
  private closed = false;
  constructor(reuseAddr: boolean, recvBufferSize: number) {
    this.sock = dgram.createSocket({ type: 'udp4', reuseAddr, recvBufferSize });
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
  addMembership(group: string, iface: string): void {
    this.sock.addMembership(group, iface);
  }
  dropMembership(group: string, iface: string): void {
    this.sock.dropMembership(group, iface);
  }
  setMulticastInterface(iface: string): void {
    this.sock.setMulticastInterface(iface);
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

export function createAudioDatagramBinding(recvBufferSize = 4 * 1024 * 1024): DatagramBinding {
  return { createUdp4: ({ reuseAddr }) => new AudioSocket(reuseAddr, recvBufferSize) };
}
