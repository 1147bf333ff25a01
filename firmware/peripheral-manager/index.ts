export {
  PeripheralManager,
  type ManagerHooks,
  type PeripheralManagerOptions,
  type StatusExtra,
} from './service.js';
export { createDemoMeters } from './demo-meters.js';
export { LIVE_PATH } from './live.js';
export { runPeripheralManagerCli, MANAGER_HELP } from './cli.js';
