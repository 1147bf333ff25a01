/**
 * An in-memory GpioBinding (one per instance, no global registry). Tests drive inputs with
 * `setInput` and read what outputs did from `levels` / `history`.
 */
import {
  GpioError,
  lineKey,
  type GpioBinding,
  type GpioDirection,
  type GpioLine,
  type GpioLineRef,
} from './gpio-binding.js';

export class FakeGpioBinding implements GpioBinding {
  readonly kind = 'fake';
  /** Current raw level per 'chip:line'. */
  readonly levels = new Map<string, boolean>();
  /** Every output write, in order. */
  readonly history: Array<{ key: string; level: boolean }> = [];
  private readonly open_ = new Map<string, Set<(l: boolean) => void>>();
  /** Chips that "exist"; empty = any chip exists. */
  constructor(private readonly chips: string[] = []) {}

  open(ref: GpioLineRef, direction: GpioDirection, initial = false): Promise<GpioLine> {
    const key = lineKey(ref);
    if (this.chips.length > 0 && !this.chips.includes(ref.chip)) {
      return Promise.reject(new GpioError('GPIO_ERR_NO_CHIP', `no GPIO chip ${ref.chip}`));
    }
    if (this.open_.has(key)) return Promise.reject(new GpioError('GPIO_ERR_BUSY', `GPIO ${key} is in use`));
    const listeners = new Set<(l: boolean) => void>();
    this.open_.set(key, listeners);
    if (direction === 'output') {
      this.levels.set(key, initial);
      this.history.push({ key, level: initial });
    } else if (!this.levels.has(key)) {
      this.levels.set(key, false);
    }
    let closed = false;
    const check = (): void => {
      if (closed) throw new GpioError('GPIO_ERR_CLOSED', `GPIO ${key} is closed`);
    };
    const line: GpioLine = {
      ref,
      direction,
      read: async () => {
        check();
        return this.levels.get(key) ?? false;
      },
      write: async (level) => {
        check();
        if (direction !== 'output') throw new GpioError('GPIO_ERR_DIRECTION', `GPIO ${key} is an input`);
        this.levels.set(key, level);
        this.history.push({ key, level });
      },
      watch: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      close: async () => {
        if (closed) return;
        closed = true;
        listeners.clear();
        this.open_.delete(key);
      },
    };
    return Promise.resolve(line);
  }

  /** Drive an input's raw level (fires watchers when it changes). */
  setInput(ref: GpioLineRef, level: boolean): void {
    const key = lineKey(ref);
    const before = this.levels.get(key);
    this.levels.set(key, level);
    if (before === level) return;
    for (const l of this.open_.get(key) ?? []) l(level);
  }

  isOpen(ref: GpioLineRef): boolean {
    return this.open_.has(lineKey(ref));
  }
}
