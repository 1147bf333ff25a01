export {
  createFsNetBinding,
  createReachabilityProbe,
  FakeNetBinding,
  type FsNetBindingOptions,
  type NetBinding,
} from './binding.js';
export {
  renderNetworkFiles,
  renderWpaSupplicant,
  dot1xFilePaths,
  wpaSupplicantPath,
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
