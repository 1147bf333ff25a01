/**
 * The audio engine's real DatagramBinding: the shared node:dgram binding with a
 * large receive buffer, since RTP at 3000 packets/s overflows the 208 kB default
 * when the event loop stalls for about 30 ms.
 */
import { createNodeDatagramBinding, type DatagramBinding } from '../net/datagram-binding.js';

export function createAudioDatagramBinding(recvBufferSize = 4 * 1024 * 1024): DatagramBinding {
  return createNodeDatagramBinding({ recvBufferSize });
}
