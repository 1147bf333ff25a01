/**
 * Network degradation mid-download, with the kernel's traffic shaper: once a
 * device's bundle download (seen through its proxy) passes a random point, a
 * token-bucket qdisc (`tc ... tbf`) goes on the drill side of that device's
 * veth, so everything towards the device (the rest of the download) crawls at
 * `rateKbit`. Needs per-device namespaces (netns.ts) and root. This kernel
 * build has no netem, so delay and loss are not emulated; tbf (rate) is what
 * `tc` can do here. The shaper comes off when the step ends.
 *
 * `tbfArgs` and `parseTbfStats` are pure; `Degrader` runs `tc`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DegradePlan {
  /** Bytes of the download before the link degrades. */
  afterBytes: number;
  /** Shaped rate towards the device. */
  rateKbit: number;
}

/** Pure: the `tc` arguments that put the shaper on `dev`. */
export function tbfArgs(dev: string, rateKbit: number): string[] {
  // Burst: 4 ms worth, and never under ten 1500-byte frames (tbf drops any packet larger than
  // its bucket; the veth's MTU is 1500 and tbf splits GSO super-packets); 200 ms of queue.
  const burstBytes = Math.max(15_000, Math.ceil((rateKbit * 1000) / 8 / 250));
  return [
    'qdisc',
    'replace',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${rateKbit}kbit`,
    'burst',
    String(burstBytes),
    'latency',
    '200ms',
  ];
}

export interface TbfStats {
  sentBytes: number;
  dropped: number;
  overlimits: number;
}

/** Pure: the counters of a tbf qdisc from `tc -s qdisc show dev X`; null when there is none. */
export function parseTbfStats(text: string): TbfStats | null {
  if (!/qdisc tbf /.test(text)) return null;
  const m = /Sent (\d+) bytes \d+ pkt \(dropped (\d+), overlimits (\d+)/.exec(text);
  if (!m) return null;
  return { sentBytes: Number(m[1]), dropped: Number(m[2]), overlimits: Number(m[3]) };
}

/** Whether `tc` can put a tbf on an interface here (probe on a namespace's loopback). */
export async function tbfAvailable(dev: string, ns?: string): Promise<boolean> {
  try {
    await run('tc', [...(ns ? ['-n', ns] : []), ...tbfArgs(dev, 1000)]);
    await run('tc', [...(ns ? ['-n', ns] : []), 'qdisc', 'del', 'dev', dev, 'root']);
    return true;
  } catch {
    return false;
  }
}

export class Degrader {
  appliedAtMs: number | null = null;
  /** Proxy bytes down when the shaper went on. */
  appliedAtBytes = 0;
  error: string | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dev: string,
    private readonly plan: DegradePlan,
    /** Bytes the proxy has sent towards the device so far. */
    private readonly bytesDown: () => number,
    private readonly onApplied: (detail: string) => void,
  ) {}

  /** Watch the download and shape the link once it passes the planned point. */
  arm(): void {
    const tick = (): void => {
      this.timer = null;
      const b = this.bytesDown();
      if (b < this.plan.afterBytes) {
        this.timer = setTimeout(tick, 5);
        return;
      }
      this.appliedAtBytes = b;
      run('tc', tbfArgs(this.dev, this.plan.rateKbit)).then(
        () => {
          this.appliedAtMs = Date.now();
          this.onApplied(`link shaped to ${this.plan.rateKbit} kbit/s after ${b} bytes`);
        },
        (err: unknown) => {
          this.error = (err as Error).message;
        },
      );
    };
    this.timer = setTimeout(tick, 5);
  }

  async stats(): Promise<TbfStats | null> {
    try {
      return parseTbfStats((await run('tc', ['-s', 'qdisc', 'show', 'dev', this.dev])).stdout);
    } catch {
      return null;
    }
  }

  /** Stop watching and take the shaper off (the veth may be gone already). */
  async clear(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await run('tc', ['qdisc', 'del', 'dev', this.dev, 'root']).catch(() => undefined);
  }
}
