/** A fake ProcessSeam for tests: records every spawn; the test makes processes print and exit. */
import type { ProcessSeam, SupervisedChild } from './process-supervisor.js';

export class FakeProcess implements SupervisedChild {
  private readonly exitHandlers: Array<(code: number | null, signal: string | null) => void> = [];
  private readonly outputHandlers: Array<(text: string) => void> = [];
  exited = false;
  readonly signals: string[] = [];
  constructor(
    readonly pid: number,
    readonly cmd: string,
    readonly args: string[],
    /** Whether SIGTERM ends it (false: only SIGKILL does). */
    private readonly obeysTerm = true,
  ) {}
  onExit(h: (code: number | null, signal: string | null) => void): void {
    this.exitHandlers.push(h);
  }
  onOutput(h: (text: string) => void): void {
    this.outputHandlers.push(h);
  }
  print(text: string): void {
    for (const h of this.outputHandlers) h(text);
  }
  exit(code: number | null, signal: string | null = null): void {
    if (this.exited) return;
    this.exited = true;
    for (const h of [...this.exitHandlers]) h(code, signal);
  }
  kill(signal: 'SIGTERM' | 'SIGKILL'): void {
    this.signals.push(signal);
    if (signal === 'SIGKILL' || this.obeysTerm) this.exit(null, signal);
  }
}

export class FakeProcessSeam implements ProcessSeam {
  readonly spawned: FakeProcess[] = [];
  private pid = 1000;
  constructor(private readonly obeysTerm = true) {}
  spawn(cmd: string, args: string[]): FakeProcess {
    const p = new FakeProcess(this.pid++, cmd, args, this.obeysTerm);
    this.spawned.push(p);
    return p;
  }
  get last(): FakeProcess | undefined {
    return this.spawned[this.spawned.length - 1];
  }
}
