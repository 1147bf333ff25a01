/** Typed errors of the image build and the SD-card writer. */
import { QperiphError } from '../../firmware/errors.js';

export type ImageErrorCode =
  | 'IMAGE_ERR_USAGE'
  | 'IMAGE_ERR_BOARD'
  | 'IMAGE_ERR_TOOL_MISSING'
  | 'IMAGE_ERR_TOOL_FAILED'
  | 'IMAGE_ERR_BASE'
  | 'IMAGE_ERR_BOOT_FILES'
  | 'IMAGE_ERR_RUNTIME'
  | 'IMAGE_ERR_SETTINGS'
  | 'IMAGE_ERR_UBOOT_ENV'
  | 'IMAGE_ERR_MIRROR'
  | 'IMAGE_ERR_FOREIGN_ARCH'
  | 'IMAGE_ERR_SIZE'
  | 'IMAGE_ERR_NATIVE_FOREIGN'
  | 'IMAGE_ERR_NATIVE_MISSING'
  | 'IMAGE_ERR_NATIVE_BUILD'
  | 'IMAGE_ERR_BOOT_SMOKE'
  | 'FLASH_ERR_NOT_BLOCK'
  | 'FLASH_ERR_NOT_REMOVABLE'
  | 'FLASH_ERR_MOUNTED'
  | 'FLASH_ERR_TOO_SMALL'
  | 'FLASH_ERR_DECLINED'
  | 'FLASH_ERR_VERIFY';

export class ImageError extends QperiphError {
  declare readonly code: ImageErrorCode;
  /** For parse errors: line number (settings file) or byte offset (environment blob). */
  readonly offset: number | undefined;
  /** For native add-on errors: the files or packages concerned. */
  readonly files: string[] | undefined;
  constructor(
    code: ImageErrorCode,
    message: string,
    options?: { cause?: unknown; offset?: number; files?: string[] },
  ) {
    super(code, message, options);
    this.offset = options?.offset;
    this.files = options?.files;
  }
}
