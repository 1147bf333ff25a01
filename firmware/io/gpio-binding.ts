/**
 * The GPIO seam. A binding opens lines by (chip, line) and works in raw electrical levels
 * (true = high); active-low inversion and debouncing are done above it (gpio-service.ts), the
 * same for every binding.
 *
 * Behaviour every binding keeps (the fake included):
 *   - `open` of a (chip, line) already open in this binding fails with GPIO_ERR_BUSY.
 *   - `watch` callbacks fire with each level seen that differs from the one before; after
 *     `close` nothing fires and `read`/`write` fail with GPIO_ERR_CLOSED.
 *   - Hardware that is missing fails `open` with GPIO_ERR_NO_CHIP / GPIO_ERR_NO_LINE.
 */
import { QperiphError } from '../errors.js';

export type GpioDirection = 'input' | 'output';

export type GpioErrorCode =
  | 'GPIO_ERR_BUSY'
  | 'GPIO_ERR_CLOSED'
  | 'GPIO_ERR_NO_CHIP'
  | 'GPIO_ERR_NO_LINE'
  | 'GPIO_ERR_IO'
  | 'GPIO_ERR_DIRECTION';

export class GpioError extends QperiphError {
  declare readonly code: GpioErrorCode;
  constructor(code: GpioErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface GpioLineRef {
  /** Chip label ('pinctrl-bcm2711'), or 'gpiochipN'. */
  chip: string;
  line: number;
}

export interface GpioLine {
  readonly ref: GpioLineRef;
  readonly direction: GpioDirection;
  read(): Promise<boolean>;
  /** Outputs only (GPIO_ERR_DIRECTION on inputs). */
  write(level: boolean): Promise<void>;
  /** Inputs: level changes. Returns an unsubscribe function. */
  watch(listener: (level: boolean) => void): () => void;
  close(): Promise<void>;
}

export interface GpioBinding {
  readonly kind: string;
  open(ref: GpioLineRef, direction: GpioDirection, initial?: boolean): Promise<GpioLine>;
}

export const lineKey = (ref: GpioLineRef): string => `${ref.chip}:${ref.line}`;
