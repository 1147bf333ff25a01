/** Public surface of the update module. */
export { UpdateError, isUpdateError, type UpdateErrorCode } from './errors.js';
export * from './bundle-codec.js';
export {
  BundleFile,
  verifyBundleFile,
  verifyHead,
  writeBundle,
  type DevicePolicy,
  type VerifiedHead,
} from './bundle.js';
export { TrustStore, loadTrustStore, verifyChain, timeFloor, type TrustChannel } from './trust.js';
export {
  DirectoryBootSelector,
  TrybootSelector,
  UbootSelector,
  initDirectorySlots,
  otherSlot,
  type BootSelector,
  type SlotName,
} from './boot-selector.js';
export { Installer, readUpdateState, type UpdateOutcome, type UpdateJob } from './installer.js';
export { downloadBundle } from './downloader.js';
export {
  UpdateService,
  createBundleUploadHandler,
  pinnedCoreAuthorizer,
  type SlotStatus,
  type UpdateServiceOptions,
} from './service.js';
export {
  CoreApiError,
  checkFetchUrl,
  createCoreApiHandler,
  decideCoreAccess,
  parseCoreConfig,
  type ConfigApplier,
  type CoreAccess,
  type CoreApiOptions,
  type CoreConfig,
} from './core-api.js';
export { createConfigApplier } from './core-config.js';
export { signAppBundle, stageRuntimeTree, type AppBundleOptions } from './runtime-tree.js';
export { EXIT_RESTART } from './launch.js';
export { runBundleCli, BUNDLE_HELP } from './cli.js';
export { encodeAppArchive, decodeAppToc } from './app-archive.js';
export { createPki, createCertificate } from './pki.js';
export {
  createUpdateService,
  defaultUpdatePaths,
  type UpdatePaths,
  type UpdateWiringOptions,
} from './wiring.js';
