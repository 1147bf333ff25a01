/**
 * Test helpers that run the compiled CLI (dist/, as on the device) as a real
 * child process and read its JSON log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'dist', 'firmware', 'cli.js');

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first (npm test does)`);
}

export type LogRecord = { event: string; level: string; [k: string]: unknown };

export class CliProcess {
  readonly child: ChildProcess;
  readonly records: LogRecord[] = [];
  stdout = '';
  stderr = '';
  readonly spawnedAt = performance.now();
  private waiters: Array<() => void> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;

  constructor(args: string[], options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}) {
    assertBuilt();
    const prefix = options.prefix ?? [];
    const cmd = prefix.length ? prefix[0]! : process.execPath;
    const argv = prefix.length ? [...prefix.slice(1), process.execPath, CLI, ...args] : [CLI, ...args];
    this.child = spawn(cmd, argv, {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.stdout += text;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          this.records.push({ ...(JSON.parse(line) as LogRecord), _atMs: performance.now() });
        } catch {}
      }
      this.wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.wake();
        resolve({ code, signal, atMs: performance.now() });
      });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolve with the first record matching, or reject after `timeoutMs`. */
  async waitFor(pred: (r: LogRecord) => boolean, timeoutMs = 30_000): Promise<LogRecord> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.records.find(pred);
      if (hit) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(
          `process exited (${this.child.exitCode ?? this.child.signalCode}) before the record.\nstderr: ${this.stderr}\nstdout: ${this.stdout.slice(-2000)}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0)
        throw new Error(
          `timed out waiting for a log record; stdout so far:\n${this.stdout.slice(-2000)}\nstderr: ${this.stderr}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; ms: number }> {
    if (this.child.exitCode !== null) return { code: this.child.exitCode, ms: 0 };
    const t0 = performance.now();
    this.child.kill(signal);
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const r = await this.exited;
    clearTimeout(killer);
    return { code: r.code, ms: r.atMs - t0 };
  }
}

/** Run the CLI to completion. */
export async function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; prefix?: string[]; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const p = new CliProcess(args, options);
  const killer = setTimeout(() => p.child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
  const r = await p.exited;
  clearTimeout(killer);
  return { code: r.code, stdout: p.stdout, stderr: p.stderr, ms: r.atMs - p.spawnedAt };
}

/** Does a command exist on PATH? */
export function haveCommand(name: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => d && existsSync(path.join(d, name)));
}
