/** The control link's public surface (main.ts, the Peripheral Manager, the emulated Core). */
export { ControlService, CONTROL_PORT, type ControlServiceOptions, type ControlHooks } from './service.js';
export {
  ControlRegistry,
  ControlRegistryError,
  type ControlSpec,
  type ControlHandle,
  type ControlValue,
} from './registry.js';
export { FrameDecoder, encodeFrame, ControlFrameError, CONTROL_MAX_MESSAGE_BYTES } from './frame-codec.js';
export { parseRpc, RPC_ERR, RpcError } from './jsonrpc.js';
export {
  trustCore,
  declineCore,
  forgetCore,
  recordPending,
  decideConnection,
  secureMode,
  normaliseFingerprint,
} from './trust.js';
export {
  FakeStreamApi,
  type StreamApi,
  type SerialApi,
  type FirmwareEvent,
  type SerialSettings,
} from './apis.js';
export { ControlClient } from './client.js';
export { runControlCli } from './cli.js';
