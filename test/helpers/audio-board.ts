/** The smallest board config the audio engine needs: a virtual card, 2 channels each way. */
import type { BoardConfig } from '../../firmware/config/board-types.js';

export const VIRTUAL_AUDIO_BOARD = {
  id: 'virtual',
  audio: {
    binding: 'virtual',
    capture: { device: 'virtual', channels: 2 },
    playback: { device: 'virtual', channels: 2 },
  },
} as unknown as BoardConfig;
