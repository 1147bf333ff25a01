/** The emulated Core's QRC server: public surface. See docs/qrc.md. */
export {
  DEFAULT_ENGINE_STATUS,
  MemoryQrcBackend,
  QrcBackendError,
  type MemoryComponentSpec,
  type MemoryControlSpec,
  type MemoryQrcBackendOptions,
  type QrcBackend,
  type QrcBackendErrorCode,
  type QrcComponentInfo,
  type QrcControlState,
  type QrcEngineStatus,
  type QrcValue,
} from './backend.js';
export { QRC_ERR, QRC_ERR_TEXT, QrcRpcError, type QrcErrorCode } from './errors.js';
export { encodeQrcFrame, QRC_MAX_FRAME_BYTES, QrcFrameDecoder, type QrcFrameEvent } from './frame-codec.js';
export { parseQrcMessage, type QrcId, type QrcInbound } from './rpc.js';
export {
  newCounters,
  QrcSession,
  type AutoPollStyle,
  type QrcAuth,
  type QrcCloseReason,
  type QrcCounters,
  type QrcCredentials,
  type QrcGroupBudget,
  type QrcSessionOptions,
} from './session.js';
export { QRC_DEFAULT_PORT, QrcServer, type QrcServerOptions } from './server.js';
export { sampleDesign } from './sample-design.js';
