/**
 * GPIO as named controls. From the board's GpioConfig it opens:
 *   - the identify LED (output; control `<name>`, read-only, shows the LED) and a writable
 *     boolean `identify` control: true blinks the LED (2 Hz) until false or `Peripheral.Identify`
 *     time runs out;
 *   - the identify button (input, debounced; control `<name>`, read-only); a press also toggles
 *     identify locally, as on the vendor's peripherals;
 *   - contact inputs (debounced; read-only boolean controls);
 *   - contact outputs (writable boolean controls).
 * Logical levels everywhere above the binding: activeLow lines are inverted here.
 * A line that fails to open is logged and left out (the rest still works).
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { GpioConfig, GpioLineConfig } from '../config/board-types.js';
import type { ControlHandle, ControlRegistry } from '../control/registry.js';
import type { Logger } from '../log/logger.js';
import type { GpioBinding, GpioLine } from './gpio-binding.js';

export const IDENTIFY_CONTROL = 'identify';
const BLINK_HALF_PERIOD_MS = 250;
const MAX_IDENTIFY_S = 3600;

/**
 * A debouncer: a level is accepted once it has held for `ms`. Pure apart from the clock.
 */
export class Debouncer {
  private stable: boolean;
  private raw: boolean;
  private timer: TimerHandle | null = null;
  constructor(
    initial: boolean,
    private readonly ms: number,
    private readonly clock: ClockSource,
    private readonly onStable: (level: boolean) => void,
  ) {
    this.stable = initial;
    this.raw = initial;
  }
  get value(): boolean {
    return this.stable;
  }
  input(level: boolean): void {
    this.raw = level;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.raw !== this.stable) {
        this.stable = this.raw;
        this.onStable(this.stable);
      }
    }, this.ms);
  }
  stop(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}

export interface GpioServiceOptions {
  config: Readonly<GpioConfig>;
  binding: GpioBinding;
  registry: ControlRegistry;
  clock: ClockSource;
  logger: Logger;
  debounceMs?: number;
  /** Called when the identify button is pressed (after debouncing). */
  onButton?: (pressed: boolean) => void;
}

export class GpioService {
  private readonly o: GpioServiceOptions & { debounceMs: number };
  private readonly log: Logger;
  private readonly lines: GpioLine[] = [];
  private readonly handles: ControlHandle[] = [];
  private readonly debouncers: Debouncer[] = [];
  private readonly unwatch: Array<() => void> = [];
  private led: { line: GpioLine; cfg: GpioLineConfig; handle: ControlHandle } | null = null;
  private identifyHandle: ControlHandle | null = null;
  private blinkTimer: TimerHandle | null = null;
  private identifyUntil = 0;
  private blinkOn = false;
  private writeChain: Promise<unknown> = Promise.resolve();
  readonly failed: Array<{ name: string; code: string }> = [];

  constructor(options: GpioServiceOptions) {
    this.o = { debounceMs: 20, ...options };
    this.log = options.logger.child({ module: 'gpio' });
  }

  async start(): Promise<void> {
    const c = this.o.config;
    const reg = this.o.registry;
    this.identifyHandle = reg.register({
      name: IDENTIFY_CONTROL,
      type: 'boolean',
      writable: true,
      description: 'Identify: blink the identify LED',
      onSet: (v) => this.identify(v === true ? MAX_IDENTIFY_S : 0),
    });
    this.handles.push(this.identifyHandle);
    if (c.identifyLed) {
      const cfg = c.identifyLed;
      const line = await this.openLine(cfg, 'output', false);
      if (line) {
        const handle = reg.register({
          name: cfg.name,
          type: 'boolean',
          writable: false,
          description: 'Identify LED',
        });
        this.handles.push(handle);
        this.led = { line, cfg, handle };
      }
    }
    if (c.identifyButton) {
      await this.openInput(c.identifyButton, 'Identify button', (pressed) => {
        this.o.onButton?.(pressed);
        if (pressed) this.identify(this.identifying ? 0 : 30);
      });
    }
    for (const cfg of c.contactInputs) await this.openInput(cfg, 'Contact input');
    for (const cfg of c.contactOutputs) {
      const line = await this.openLine(cfg, 'output', false);
      if (!line) continue;
      this.handles.push(
        reg.register({
          name: cfg.name,
          type: 'boolean',
          writable: true,
          description: 'Contact output',
          onSet: (v) => this.writeLine(line, cfg, v === true),
        }),
      );
    }
    this.log.info('gpio_started', {
      binding: this.o.binding.kind,
      lines: this.lines.length,
      failed: this.failed,
    });
  }

  get identifying(): boolean {
    return this.blinkTimer !== null;
  }

  /** Blink the identify LED for `seconds` (0 stops). */
  identify(seconds: number): void {
    const s = Math.max(0, Math.min(MAX_IDENTIFY_S, seconds));
    if (s === 0) {
      if (this.blinkTimer) this.o.clock.clearTimeout(this.blinkTimer);
      this.blinkTimer = null;
      this.setLed(false);
      this.identifyHandle?.update(false);
      return;
    }
    this.identifyUntil = this.o.clock.monotonicMs() + s * 1000;
    this.identifyHandle?.update(true);
    if (this.blinkTimer) return;
    const step = (): void => {
      if (this.o.clock.monotonicMs() >= this.identifyUntil) {
        this.blinkTimer = null;
        this.setLed(false);
        this.identifyHandle?.update(false);
        return;
      }
      this.setLed(!this.blinkOn);
      this.blinkTimer = this.o.clock.setTimeout(step, BLINK_HALF_PERIOD_MS);
    };
    this.blinkTimer = this.o.clock.setTimeout(step, 0);
    this.setLed(true);
  }

  async stop(): Promise<void> {
    if (this.blinkTimer) this.o.clock.clearTimeout(this.blinkTimer);
    this.blinkTimer = null;
    for (const u of this.unwatch) u();
    for (const d of this.debouncers) d.stop();
    for (const h of this.handles) h.unregister();
    await this.writeChain.catch(() => undefined);
    await Promise.all(this.lines.map((l) => l.close().catch(() => undefined)));
    this.lines.length = 0;
    this.handles.length = 0;
  }

  private setLed(on: boolean): void {
    this.blinkOn = on;
    if (!this.led) return;
    this.led.handle.update(on);
    this.writeLine(this.led.line, this.led.cfg, on);
  }

  private writeLine(line: GpioLine, cfg: GpioLineConfig, logical: boolean): void {
    this.writeChain = this.writeChain
      .then(() => line.write(logical !== cfg.activeLow))
      .catch((err: unknown) => this.log.warn('gpio_write_failed', { line: cfg.name, err }));
  }

  private async openLine(
    cfg: GpioLineConfig,
    dir: 'input' | 'output',
    logical: boolean,
  ): Promise<GpioLine | null> {
    try {
      const line = await this.o.binding.open(
        { chip: cfg.chip, line: cfg.line },
        dir,
        logical !== cfg.activeLow,
      );
      this.lines.push(line);
      return line;
    } catch (err) {
      this.failed.push({ name: cfg.name, code: (err as { code?: string }).code ?? 'GPIO_ERR_IO' });
      this.log.warn('gpio_open_failed', { line: cfg.name, chip: cfg.chip, offset: cfg.line, err });
      return null;
    }
  }

  private async openInput(
    cfg: GpioLineConfig,
    description: string,
    extra?: (v: boolean) => void,
  ): Promise<void> {
    const line = await this.openLine(cfg, 'input', false);
    if (!line) return;
    let initial = false;
    try {
      initial = (await line.read()) !== cfg.activeLow;
    } catch (err) {
      this.log.warn('gpio_read_failed', { line: cfg.name, err });
    }
    const handle = this.o.registry.register({
      name: cfg.name,
      type: 'boolean',
      writable: false,
      description,
      initial,
    });
    this.handles.push(handle);
    const d = new Debouncer(initial, this.o.debounceMs, this.o.clock, (v) => {
      handle.update(v);
      extra?.(v);
    });
    this.debouncers.push(d);
    this.unwatch.push(line.watch((raw) => d.input(raw !== cfg.activeLow)));
  }
}
