/**
 * A DatagramBinding decorator that shows every received datagram to an observer before the
 * socket's own handler sees it: the audio peer times packet arrival this way while the firmware's
 * RtpReceiver does the receiving.
 */
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../../../firmware/net/datagram-binding.js';

export function tapBinding(
  inner: DatagramBinding,
  observe: (data: Buffer, from: RemoteInfo) => void,
): DatagramBinding {
  return {
    createUdp4(o) {
      const s = inner.createUdp4(o);
      const wrapped: DatagramSocket = {
        bind: (port, address) => s.bind(port, address),
        local: () => s.local(),
        addMembership: (g, i) => s.addMembership(g, i),
        dropMembership: (g, i) => s.dropMembership(g, i),
        setMulticastInterface: (i) => s.setMulticastInterface(i),
        setMulticastTTL: (ttl) => s.setMulticastTTL(ttl),
        setMulticastLoopback: (on) => s.setMulticastLoopback(on),
        send: (data, port, address) => s.send(data, port, address),
        onMessage: (handler) =>
          s.onMessage((data, from) => {
            try {
              observe(data, from);
            } catch {
              // an observer's fault never costs the receiver a packet
            }
            handler(data, from);
          }),
        onError: (h) => s.onError(h),
        close: () => s.close(),
      };
      return wrapped;
    },
  };
}
