/** Typed errors of the Core's audio peer and PTP grandmaster (bench/core/audio-peer.ts, ptp-gm.ts). */
import { QperiphError } from '../../../firmware/errors.js';

export type CoreAudioErrorCode =
  /** Options out of range (address, port, channels, format); nothing was opened. */
  | 'CORE_AUDIO_ERR_BAD_OPTIONS'
  /** The peripheral refused Stream.Open (its RPC error is the cause), or a local socket failed. */
  | 'CORE_AUDIO_ERR_OPEN'
  /** Called in the wrong state (start twice, poll before start). */
  | 'CORE_AUDIO_ERR_STATE'
  /** ptp4l or pmc is not installed. */
  | 'CORE_PTP_ERR_UNAVAILABLE';

export class CoreAudioError extends QperiphError {
  declare readonly code: CoreAudioErrorCode;
  constructor(code: CoreAudioErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
