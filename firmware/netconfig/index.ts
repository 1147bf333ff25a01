export { applySteps, wpaWiredUnit, type ApplyPlanInput, type ApplyStep } from './apply-plan.js';
export {
  createFsNetBinding,
  execCommandRunner,
  FakeNetBinding,
  type CommandRunner,
  type FsNetBindingOptions,
  type NetBinding,
} from './binding.js';
export { createNetconfigForBoard, defaultNetworkSettings, type NetconfigForBoardOptions } from './factory.js';
export {
  createConnectivityProbe,
  createReachabilityProbe,
  gatewayTargets,
  GATEWAY_PORTS,
  parseDefaultGateways,
  probeTcp,
  type ConnectivityProbeOptions,
  type ProbeTarget,
} from './probe.js';
export {
  renderNetworkFiles,
  renderWpaSupplicant,
  dot1xFilePaths,
  networkdUnitPath,
  wpaSupplicantPath,
  wpaWiredPath,
  type NetBackend,
  type RenderedFile,
} from './render.js';
export {
  NetconfigService,
  type NetconfigEvent,
  type NetconfigServiceOptions,
  type NetconfigSnapshot,
} from './service.js';
export * from './types.js';
