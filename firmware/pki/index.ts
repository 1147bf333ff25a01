export {
  DeviceIdentity,
  validateCsrRequest,
  type CertificateInfo,
  type CsrRequest,
  type IdentityMaterial,
} from './identity.js';
export {
  checkInstallableChain,
  parseCertificatePem,
  PkiError,
  summarise,
  type CertSummary,
  type PkiErrorCode,
} from './cert-check.js';
export {
  createAuthority,
  issueCertificate,
  generateKeyPem,
  loadAuthority,
  type Authority,
  type IssueRequest,
} from './issuer.js';
