/**
 * Typed errors of the update module. Every refusal carries a stable code
 * (UPDATE_ERR_*), optionally the byte offset in the bundle where the problem
 * was found and the install step that failed.
 */
import { QperiphError } from '../errors.js';

export type UpdateErrorCode =
  | 'UPDATE_ERR_BAD_MAGIC'
  | 'UPDATE_ERR_BAD_VERSION'
  | 'UPDATE_ERR_TRUNCATED'
  | 'UPDATE_ERR_OVERSIZED'
  | 'UPDATE_ERR_BAD_MANIFEST'
  | 'UPDATE_ERR_BAD_ENVELOPE'
  | 'UPDATE_ERR_UNSIGNED'
  | 'UPDATE_ERR_SIGNATURE'
  | 'UPDATE_ERR_UNKNOWN_SIGNER'
  | 'UPDATE_ERR_CHAIN'
  | 'UPDATE_ERR_CERT_EXPIRED'
  | 'UPDATE_ERR_CERT_NOT_YET_VALID'
  | 'UPDATE_ERR_CERT_USAGE'
  | 'UPDATE_ERR_WRONG_PRODUCT'
  | 'UPDATE_ERR_WRONG_BOARD'
  | 'UPDATE_ERR_DOWNGRADE'
  | 'UPDATE_ERR_REPLAY'
  | 'UPDATE_ERR_HASH'
  | 'UPDATE_ERR_ARCHIVE'
  | 'UPDATE_ERR_PATH'
  | 'UPDATE_ERR_BUSY'
  | 'UPDATE_ERR_SLOT'
  | 'UPDATE_ERR_BOOT_SELECTOR'
  | 'UPDATE_ERR_DOWNLOAD'
  | 'UPDATE_ERR_READBACK'
  | 'UPDATE_ERR_KEY'
  | 'UPDATE_ERR_USAGE';

export class UpdateError extends QperiphError {
  declare readonly code: UpdateErrorCode;
  /** Byte offset in the bundle (or payload) where the problem was seen, when known. */
  readonly offset: number | undefined;
  /** The install step that failed, when known ('verify', 'write', 'arm', ...). */
  readonly step: string | undefined;
  constructor(
    code: UpdateErrorCode,
    message: string,
    options: { offset?: number; step?: string; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.offset = options.offset;
    this.step = options.step;
  }
}

export function isUpdateError(err: unknown): err is UpdateError {
  return err instanceof UpdateError;
}
