/**
 * A small in-memory design for tests, the benchmark and a bare emulated Core: four named
 * controls (one read-only meter), a gain component and a status component.
 */
import { MemoryQrcBackend, type MemoryQrcBackendOptions } from './backend.js';

export function sampleDesign(status: MemoryQrcBackendOptions['status'] = {}): MemoryQrcBackend {
  return new MemoryQrcBackend({
    status: { DesignName: 'Lobby', DesignCode: 'abcDEF123456', ...status },
    named: [
      { Name: 'MainGain', Value: -10, ValueMin: -100, ValueMax: 20, format: (v) => `${String(v)}dB` },
      { Name: 'MainMute', Value: false },
      { Name: 'Label', Value: 'hello' },
      { Name: 'Meter', Value: -60, Direction: 'Read Only', ValueMin: -100, ValueMax: 0 },
    ],
    components: [
      {
        Name: 'Gain1',
        Type: 'gain',
        Properties: [{ Name: 'multi_channel_type', Value: '1' }],
        Controls: [
          { Name: 'gain', Value: 0, ValueMin: -100, ValueMax: 20 },
          { Name: 'mute', Value: false },
          { Name: 'peak', Value: -90, Direction: 'Read Only' },
        ],
      },
      { Name: 'Status', Type: 'status_combiner', Controls: [{ Name: 'status', Value: 'OK' }] },
    ],
  });
}
