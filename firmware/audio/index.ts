/** Public surface of the audio engine. */
export {
  AudioEngine,
  AudioEngineError,
  type RxStreamSpec,
  type StreamStatus,
  type TxStreamSpec,
} from './engine.js';
export type { AudioBinding, CaptureStream, PlaybackStream } from './audio-binding.js';
export { VirtualAudioBinding } from './audio-binding.js';
export { AlsaAudioBinding } from './alsa-binding.js';
export { createAudioDatagramBinding } from './audio-datagram.js';
export { createFreeRunningClock, type MediaClock, type MediaClockStatus } from './media-clock.js';
export { phc2sysArgs, Ptp4lClock, ptp4lConfig } from './ptp.js';
export { SapService } from './sap-service.js';
export { runAudioCli, AUDIO_HELP } from './cli.js';
