/**
 * The audio engine's real DatagramBinding: the shared node:dgram binding with a
 * large receive buffer, since RTP at 3000 packets/s overflows the 208 kB default
 * when the event loop stalls for about 30 ms.
 *
 * It is marked (`workerSocketsOf`) so the engine knows these are plain node:dgram
 * sockets that its receive worker can open for itself, with the same buffer size.
 * Any other binding (the in-memory fake) keeps receive on the engine's thread.
 */
import { createNodeDatagramBinding, type DatagramBinding } from '../net/datagram-binding.js';

const WORKER_SOCKETS = Symbol('qperiph.audio.workerSockets');

interface MarkedBinding extends DatagramBinding {
  [WORKER_SOCKETS]?: { recvBufferSize: number };
}

export function createAudioDatagramBinding(recvBufferSize = 4 * 1024 * 1024): DatagramBinding {
  const b: MarkedBinding = createNodeDatagramBinding({ recvBufferSize });
  b[WORKER_SOCKETS] = { recvBufferSize };
  return b;
}

/** The socket options a worker thread needs to open the same sockets, or null for other bindings. */
export function workerSocketsOf(binding: DatagramBinding): { recvBufferSize: number } | null {
  return (binding as MarkedBinding)[WORKER_SOCKETS] ?? null;
}
