/** Typed errors of the emulated Core (stable codes, CORE_ERR_*). */
import { QperiphError } from '../../firmware/errors.js';

export type CoreErrorCode =
  | 'CORE_ERR_PIN_MISMATCH'
  | 'CORE_ERR_NO_CERT'
  | 'CORE_ERR_WRONG_PART'
  | 'CORE_ERR_REFUSED'
  | 'CORE_ERR_HTTP'
  | 'CORE_ERR_IDENTITY'
  | 'CORE_ERR_NOT_CONNECTED';

export class CoreError extends QperiphError {
  constructor(
    code: CoreErrorCode,
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(code, message);
  }
}
