/**
 * Applies a Core API configuration (`PUT /api/v1/core/config`) through the
 * same control service and state store the control link uses: the design is
 * stored with the control service's queued state writes and announced like a
 * Design.Assign; controls are set like Controls.Set (every name is checked
 * before anything changes).
 */
import type { StateStore } from '../config/state-store.js';
import type { ControlService } from '../control/service.js';
import { CoreApiError, type ConfigApplier } from './core-api.js';

export type ConfigControlService = Pick<ControlService, 'registry' | 'persist' | 'updateStatus' | 'hooks'>;

export function createConfigApplier(control: ConfigControlService, state: StateStore): ConfigApplier {
  return async (cfg) => {
    const applied: string[] = [];
    const reg = control.registry;
    const controls = Object.entries(cfg.controls ?? {});
    for (const [name] of controls) {
      if (!reg.has(name)) throw new CoreApiError('CORE_ERR_UNKNOWN_CONTROL', `unknown control ${name}`);
      const { snapshot } = reg.read(name);
      if (!snapshot.Writable) throw new CoreApiError('CORE_ERR_READ_ONLY', `${snapshot.Name} is read-only`);
    }
    if (cfg.design) {
      const design = cfg.design;
      await control.persist(() =>
        state.update((s) => {
          s.design = design;
        }),
      );
      control.updateStatus();
      control.hooks.onDesignChanged?.(state.get().design);
      applied.push('design');
    }
    for (const [name, value] of controls) {
      const s = reg.setFromLink(name, value, 0);
      applied.push(`control:${s.Name}`);
    }
    return applied;
  };
}
