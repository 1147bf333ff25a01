/**
 * The drill: N virtual peripherals (each under its own launcher and
 * supervisor, on its own loopback address, with its own state directory and
 * app slots under the work directory), a Core-side rollout coordinator, and
 * the faults of each scenario step. Collects every device's timeline, checks
 * the step assertions, and writes the JSON report, JUnit XML and SVG picture.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Logger } from '../../firmware/log/logger.js';
import { silentLogger } from '../../firmware/log/logger.js';
import type { DeviceFirmwareStatus, DeviceResult, RolloutTarget } from '../core/rollout.js';
import { createCoreTlsIdentity, createDevSigner, provisionAnchor } from '../core/signer.js';
import { BundleServer } from './bundle-server.js';
import type { CoordinatorConfig } from './coordinator.js';
import { BundleFactory, type StepBundle } from './faults/bundles.js';
import { runCoordinated } from './faults/failover.js';
import { Degrader, type TbfStats } from './faults/net-degrade.js';
import { CuttingProxy } from './faults/net-proxy.js';
import { armPowerCut, planCut, seededRandom } from './faults/power-cut.js';
import { Progress } from './progress.js';
import {
  finishReport,
  writeJsonReport,
  type Assertion,
  type DeviceReport,
  type DrillReport,
  type StepReport,
} from './report.js';
import { renderJunit } from './junit.js';
import {
  DrillError,
  NETNS_FAULTS,
  selectDevices,
  stepGroups,
  type Scenario,
  type ScenarioStep,
} from './scenario.js';
import {
  freeBlock,
  HUB_ADDRESS,
  namespacesAvailable,
  planNamespaces,
  removeStaleNamespaces,
  setUpNamespaces,
  tearDownNamespaces,
  type NsDevice,
} from './netns.js';
import { groupRss, Supervisor, type TimelineEvent } from './supervisor.js';
import { renderTimelineSvg } from './timeline-svg.js';

export interface DrillOptions {
  scenario: Scenario;
  /** Device state, slots, bundles, logs. */
  workDir: string;
  /** report.json, junit.xml, timeline.svg. */
  outDir: string;
  /** Project root with dist/ and package.json (the runtime the devices start from). */
  projectRoot: string;
  progress?: Progress;
  logger?: Logger;
  /** How often to sample the RSS of all drill processes (ms); 0 = never. */
  sampleMs?: number;
  /** Peripherals booting at once (2 cores: a few). */
  bootParallel?: number;
  /** Remove the device state directories at the end (keeps logs and bundles). */
  cleanup?: boolean;
  /**
   * Where the devices live: all on loopback addresses of this namespace (default), each in its
   * own network namespace (root only; see netns.ts), or namespaces when they can be made.
   */
  isolation?: 'loopback' | 'netns' | 'auto';
}

interface Device {
  index: number;
  id: string;
  address: string;
  stateDir: string;
  sup: Supervisor;
  timeline: TimelineEvent[];
  target: RolloutTarget;
  upCount: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function getStatus(
  d: Device,
  tls: { cert: string; key: string; agent: Agent },
  timeoutMs = 3000,
): Promise<DeviceFirmwareStatus | null> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      new URL('/api/v1/core/firmware', d.target.httpsUrl),
      { cert: tls.cert, key: tls.key, rejectUnauthorized: false, timeout: timeoutMs, agent: tls.agent },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => {
          try {
            resolve(
              res.statusCode === 200
                ? (JSON.parse(Buffer.concat(parts).toString()) as DeviceFirmwareStatus)
                : null,
            );
          } catch {
            resolve(null);
          }
        });
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
    req.end();
  });
}

/** A device is settled when it answers, runs its primary slot and has no job. */
function settled(s: DeviceFirmwareStatus | null): boolean {
  return s !== null && s.phase === 'idle' && s.bootedSlot === s.primarySlot;
}

export async function runDrill(o: DrillOptions): Promise<DrillReport> {
  const sc = o.scenario;
  const log = o.logger ?? silentLogger;
  const progress = o.progress ?? new Progress(process.stderr, false);
  const startedAtMs = Date.now();
  await mkdir(o.workDir, { recursive: true });
  await mkdir(o.outDir, { recursive: true });
  const coreDir = join(o.workDir, 'core');
  const signer = await createDevSigner({ dir: coreDir });
  let isolation: 'loopback' | 'netns' = o.isolation === 'netns' ? 'netns' : 'loopback';
  if (o.isolation === 'auto') {
    const can = await namespacesAvailable();
    isolation = can.ok ? 'netns' : 'loopback';
    progress.note(`isolation: ${isolation} (${can.reason})`);
  }
  const needsNs = sc.steps.filter((st) => NETNS_FAULTS.has(st.fault)).map((st) => st.fault);
  if (needsNs.length && isolation !== 'netns')
    throw new DrillError(
      'DRILL_ERR_USAGE',
      `${[...new Set(needsNs)].join(', ')} shapes each device's own link: run as root with --isolation netns (or auto where namespaces work)`,
    );
  let namespaces: NsDevice[] = [];
  if (isolation === 'netns') {
    await removeStaleNamespaces();
    namespaces = planNamespaces(String(process.pid), sc.peripherals, await freeBlock());
    await setUpNamespaces(namespaces);
  }
  // The drill's own address as the devices see it (bundle downloads).
  const hub = isolation === 'netns' ? HUB_ADDRESS : '127.0.0.1';
  const tls = await createCoreTlsIdentity(['127.0.0.1', HUB_ADDRESS]);
  // Status polls keep one connection per device open (a fresh TLS handshake costs ~8 ms of CPU).
  const poll = {
    cert: tls.cert,
    key: tls.key,
    agent: new Agent({ keepAlive: true, maxSockets: 1, keepAliveMsecs: 1000 }),
  };
  await writeFile(join(coreDir, 'core-ca.pem'), tls.caPem);
  const pkg = JSON.parse(await readFile(join(o.projectRoot, 'package.json'), 'utf8')) as { version: string };
  const bundles = new BundleFactory({
    projectRoot: o.projectRoot,
    workDir: o.workDir,
    signer,
    baseVersion: pkg.version,
  });
  const launchJs = join(o.projectRoot, 'dist', 'firmware', 'launch.js');
  const board = join(o.projectRoot, 'board-configs', 'virtual.json');
  const assertions: Assertion[] = [];
  const check = (step: string, name: string, ok: boolean, message?: string, device?: string): void => {
    assertions.push({
      step,
      name,
      ok,
      atMs: Date.now(),
      ...(device ? { device } : {}),
      ...(ok || !message ? {} : { message }),
    });
  };

  // Bundles are built in the background while the peripherals boot.
  const built = new Map<number, Promise<StepBundle>>();
  const prebuild = (async () => {
    for (let si = 0; si < sc.steps.length; si++) {
      const p = bundles.forStep(si, (sc.steps[si] as ScenarioStep).fault);
      built.set(si, p);
      await p.catch(() => undefined);
    }
  })();

  // ---- peripherals ----
  const devices: Device[] = [];
  for (let i = 1; i <= sc.peripherals; i++) {
    const ns = namespaces[i - 1];
    const address = ns ? ns.address : `${sc.addressPrefix}.${sc.firstHost + i - 1}`;
    const dir = join(o.workDir, `dev${i}`);
    const stateDir = join(dir, 'state');
    await rm(dir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true });
    await provisionAnchor(stateDir, signer);
    const sup = new Supervisor({
      id: `dev${i}`,
      // `ip netns exec` enters the namespace and execs node: same pid, same process group.
      command: ns ? 'ip' : process.execPath,
      args: [
        ...(ns ? ['netns', 'exec', ns.name, process.execPath] : []),
        launchJs,
        '--app-root',
        join(stateDir, 'app'),
        '--',
        'start',
        '--board',
        board,
        '--state-dir',
        stateDir,
        '--address',
        address,
        '--name',
        `drill-${i}`,
      ],
      env: {
        ...process.env,
        QPERIPH_UPDATE_HEALTH_DEADLINE_MS: String(sc.healthDeadlineMs),
        // Nobody watches the drill's input meters: no capture without a stream.
        QPERIPH_CAPTURE_WHEN_IDLE: '0',
        // A hundred peripherals spinning for a tight QDP announce grid would cost a core.
        QPERIPH_QDP_SPIN_MS: '0',
        // Idle wake-ups: meters nobody reads once a second, event-loop delay sampled every 500 ms.
        QPERIPH_METER_MS: '1000',
        QPERIPH_LAG_RESOLUTION_MS: '500',
        // Smaller heaps and fewer helper threads: a young generation of 1 MiB semi-spaces
        // (default 16) and one V8 platform thread cut the RSS of a launcher + runtime pair by
        // about a sixth; two libuv threads are plenty for one device's file and crypto work.
        NODE_OPTIONS: [process.env['NODE_OPTIONS'] ?? '', '--max-semi-space-size=1', '--v8-pool-size=1']
          .join(' ')
          .trim(),
        UV_THREADPOOL_SIZE: process.env['UV_THREADPOOL_SIZE'] ?? '2',
        NODE_EXTRA_CA_CERTS: join(coreDir, 'core-ca.pem'),
      },
      cwd: o.projectRoot,
      logFile: join(dir, 'device.log'),
      restartLimit: 10,
      restartWindowMs: 60_000,
    });
    const d: Device = {
      index: i,
      id: `dev${i}`,
      address,
      stateDir,
      sup,
      timeline: [],
      target: { id: `dev${i}`, httpsUrl: `https://${address}:8443` },
      upCount: 0,
    };
    sup.on('transition', (e: TimelineEvent) => d.timeline.push(e));
    sup.on('log', (rec: Record<string, unknown>) => {
      if (rec['event'] === 'ready') {
        d.upCount++;
        d.timeline.push({ atMs: Date.now(), state: 'up' });
      } else if (rec['module'] === 'update' && rec['event'] === 'state' && typeof rec['to'] === 'string') {
        d.timeline.push({
          atMs: Date.now(),
          state: rec['to'],
          detail: `installer ${String(rec['from'])} → ${rec['to']}`,
        });
      }
    });
    devices.push(d);
  }

  // RSS sampling of every peripheral process group + the drill itself.
  let peakRss: number | null = null;
  let sampling = true;
  const sampler = (async () => {
    if (!o.sampleMs) return;
    while (sampling) {
      const groups = new Set<number>();
      for (const d of devices) if (d.sup.pid) groups.add(d.sup.pid);
      const rss = await groupRss(groups, new Set([process.pid]));
      peakRss = Math.max(peakRss ?? 0, rss);
      await sleep(o.sampleMs);
    }
  })();

  const counts = { step: 'boot', done: 0, total: devices.length, failed: 0 };
  const up = (): number => devices.filter((d) => d.sup.state === 'starting' && d.upCount > 0).length;
  const tick = (): void => progress.update({ ...counts, up: up(), peripherals: devices.length });
  const ticker = setInterval(tick, 500);

  const bundleServer = new BundleServer(tls);
  const proxies: CuttingProxy[] = [];
  const steps: StepReport[] = [];
  let deviceReports: DeviceReport[];
  try {
    // ---- boot, a few at a time ----
    const bootParallel = Math.max(1, o.bootParallel ?? 4);
    let next = 0;
    const bootOne = async (): Promise<void> => {
      for (;;) {
        const d = devices[next++];
        if (!d) return;
        d.sup.start();
        const deadline = Date.now() + sc.bootTimeoutMs;
        while (d.upCount === 0 && Date.now() < deadline && d.sup.state !== 'gave-up') await sleep(100);
        counts.done++;
        if (d.upCount === 0) counts.failed++;
        tick();
      }
    };
    await Promise.all(Array.from({ length: bootParallel }, () => bootOne()));
    const bootFailed = devices.filter((d) => d.upCount === 0);
    check(
      'boot',
      'every peripheral started',
      bootFailed.length === 0,
      `not up: ${bootFailed.map((d) => d.id).join(', ')}`,
    );
    if (bootFailed.length === devices.length)
      throw new DrillError(
        'DRILL_ERR_BOOT',
        `no peripheral came up (see ${join(o.workDir, 'dev1', 'device.log')})`,
      );
    // The Core API answers once the manager is listening.
    await Promise.all(
      devices.map(async (d) => {
        const deadline = Date.now() + sc.bootTimeoutMs;
        while (Date.now() < deadline && !(await getStatus(d, poll))) await sleep(250);
      }),
    );
    const serverPort = await bundleServer.listen('127.0.0.1');
    const rand = seededRandom(sc.seed);

    // ---- steps ----
    for (const group of stepGroups(sc.steps)) {
      await Promise.all(
        group.map(async (si) => {
          const step = sc.steps[si] as ScenarioStep;
          const chosen = selectDevices(step.devices, sc.peripherals).map((n) => devices[n - 1] as Device);
          await prebuild;
          const bundle = await (built.get(si) as Promise<StepBundle>);
          const before = new Map(
            await Promise.all(chosen.map(async (d) => [d.id, await getStatus(d, poll)] as const)),
          );
          counts.step = step.name;
          counts.done = 0;
          counts.total = chosen.length;
          counts.failed = 0;
          progress.note(
            `step ${step.name}: ${step.fault} on ${chosen.length} peripheral(s), bundle ${bundle.version}`,
          );
          const t0 = Date.now();
          const cuts = new Map<string, string>();
          const disarm: Array<() => void> = [];
          if (step.fault === 'power-cut') {
            for (const d of chosen) {
              const plan = planCut(rand);
              disarm.push(
                armPowerCut(d.sup, plan, (detail) => {
                  cuts.set(d.id, detail);
                  d.timeline.push({ atMs: Date.now(), state: 'power-cut', detail });
                }).disarm,
              );
            }
          }
          const fetchUrls: Record<string, string> = {};
          const stepProxies: CuttingProxy[] = [];
          const degraders = new Map<string, Degrader>();
          const urlPath = `/bundles/step-${si + 1}.qpb`;
          let bundleSize = 0;
          if (step.delivery === 'fetch') {
            bundleServer.files.set(urlPath, bundle.path);
            const size = (await readFile(bundle.path)).length;
            bundleSize = size;
            for (const d of chosen) {
              const proxy = new CuttingProxy({
                listenHost: hub,
                upstreamHost: '127.0.0.1',
                upstreamPort: serverPort,
                ...(step.fault === 'network-cut'
                  ? {
                      cutAfterBytes: Math.floor(size * (0.3 + 0.4 * rand())),
                      bytesPerSecond: 4 * 1024 * 1024,
                    }
                  : step.fault === 'network-degrade'
                    ? // Slow enough that the shaper (a `tc` exec away) lands mid-download.
                      { bytesPerSecond: 1024 * 1024 }
                    : {}),
              });
              proxy.on('cut', (e: { afterBytes: number }) =>
                d.timeline.push({
                  atMs: Date.now(),
                  state: 'network-cut',
                  detail: `connection cut after ${e.afterBytes} bytes`,
                }),
              );
              const port = await proxy.listen();
              proxies.push(proxy);
              stepProxies.push(proxy);
              const ns = namespaces[d.index - 1];
              if (step.fault === 'network-degrade' && ns) {
                const dg = new Degrader(
                  ns.name,
                  { afterBytes: Math.floor(size * (0.3 + 0.4 * rand())), rateKbit: DEGRADED_KBIT },
                  () => proxy.bytesDown,
                  (detail) => d.timeline.push({ atMs: Date.now(), state: 'network-degrade', detail }),
                );
                dg.arm();
                degraders.set(d.id, dg);
              }
              fetchUrls[d.id] = `https://${hub}:${port}${urlPath}`;
            }
          }
          const rangeBefore = bundleServer.rangeRequests;
          const cfg: CoordinatorConfig = {
            role: 'primary',
            bundle: bundle.path,
            expectVersion: bundle.version,
            targets: chosen.map((d) => d.target),
            policy: step.policy,
            clientTls: { cert: tls.cert, key: tls.key },
            journalFile: join(o.workDir, 'core', `journal-step-${si + 1}.jsonl`),
            timeoutMs: sc.stepTimeoutMs,
            pollMs: 300,
            refetchAfterMs: 3000,
            ...(step.delivery === 'fetch' ? { fetchUrls } : {}),
          };
          const byId = new Map(chosen.map((d) => [d.id, d]));
          const run = await runCoordinated(cfg, join(o.workDir, 'core', `coordinator-step-${si + 1}.json`), {
            coordinatorJs: join(o.projectRoot, 'dist', 'bench', 'drill', 'coordinator.js'),
            failover: step.fault === 'core-failover',
            logFile: join(o.workDir, 'core', 'coordinator.log'),
            onProgress: (r: DeviceResult) => {
              const ev = r.events.at(-1);
              const d = byId.get(r.id);
              if (d && ev)
                d.timeline.push({
                  atMs: ev.atMs,
                  state: ev.state,
                  ...(ev.detail ? { detail: ev.detail } : {}),
                });
              if (['committed', 'rolled-back', 'refused', 'failed', 'timeout'].includes(r.state)) {
                counts.done++;
                if (r.state !== 'committed') counts.failed++;
              }
            },
          });
          if (run.failover) {
            for (const d of chosen)
              d.timeline.push({
                atMs: run.failover.killedAtMs,
                state: 'core-failover',
                detail: 'primary coordinator killed; backup resumes',
              });
          }
          // Let every device settle (a power-cut device restarts and resumes its journal).
          const settleDeadline = Date.now() + Math.max(30_000, sc.healthDeadlineMs * 4);
          const after = new Map<string, DeviceFirmwareStatus | null>();
          await Promise.all(
            chosen.map(async (d) => {
              let s = await getStatus(d, poll);
              while (!settled(s) && Date.now() < settleDeadline) {
                await sleep(300);
                s = await getStatus(d, poll);
              }
              after.set(d.id, s);
            }),
          );
          for (const f of disarm) f();
          const degraded = new Map<string, DegradeEvidence>();
          for (const [id, dg] of degraders) {
            const dev = byId.get(id);
            const verifiedAt = dev?.timeline.find(
              (e) => e.state === 'verified' && dg.appliedAtMs !== null && e.atMs >= dg.appliedAtMs,
            )?.atMs;
            degraded.set(id, {
              appliedAtMs: dg.appliedAtMs,
              appliedAtBytes: dg.appliedAtBytes,
              error: dg.error,
              stats: await dg.stats(),
              verifiedAtMs: verifiedAt ?? null,
              size: bundleSize,
            });
            await dg.clear();
          }
          for (const p of stepProxies) await p.close();
          bundleServer.files.delete(urlPath);
          const results = run.results;
          steps.push({
            name: step.name,
            fault: step.fault,
            devices: chosen.map((d) => d.id),
            version: bundle.version,
            startedAtMs: t0,
            finishedAtMs: Date.now(),
            results,
          });
          stepAssertions(step, bundle, chosen, results, before, after, check, {
            cuts,
            failover: run.failover !== null,
            proxyCuts: stepProxies.reduce((n, p) => n + p.cutsDone, 0),
            rangeRequests: bundleServer.rangeRequests - rangeBefore,
            degraded,
          });
          log.info('drill.step', { step: step.name, results: results.map((r) => [r.id, r.state]) });
        }),
      );
    }
  } finally {
    clearInterval(ticker);
    // ---- final state of every device ----
    const final = new Map<string, DeviceFirmwareStatus | null>();
    // A few at a time, with retries: a loaded machine answers slowly, that is not a bricked device.
    let at = 0;
    const finalOne = async (): Promise<void> => {
      for (let d = devices[at++]; d; d = devices[at++]) {
        let s: DeviceFirmwareStatus | null = null;
        for (let k = 0; k < 5 && !settled(s) && d.upCount > 0; k++) {
          if (k > 0) await sleep(1000);
          s = await getStatus(d, poll, 15_000);
        }
        final.set(d.id, s);
      }
    };
    await Promise.all(Array.from({ length: 8 }, () => finalOne()));
    await Promise.all(devices.map((d) => d.sup.stop()));
    poll.agent.destroy();
    if (namespaces.length) await tearDownNamespaces(namespaces);
    await bundleServer.close();
    for (const p of proxies) await p.close().catch(() => undefined);
    sampling = false;
    await sampler;
    progress.end();
    deviceReports = devices.map((d) => {
      const s = final.get(d.id) ?? null;
      return {
        id: d.id,
        address: d.address,
        timeline: [...d.timeline].sort((a, b) => a.atMs - b.atMs),
        finalVersion: s?.version ?? null,
        bootedSlot: s?.bootedSlot ?? null,
        primarySlot: s?.primarySlot ?? null,
        phase: s?.phase ?? null,
        healthy: s?.healthy ?? false,
        bricked: !settled(s),
        runs: d.sup.runs,
      };
    });
    if (o.cleanup)
      for (const d of devices) await rm(d.stateDir, { recursive: true, force: true }).catch(() => undefined);
  }
  for (const d of deviceReports)
    check(
      'final',
      'on a committed slot, answering (not bricked)',
      !d.bricked,
      `status ${d.phase ?? 'unreachable'}, booted ${d.bootedSlot}, primary ${d.primarySlot}`,
      d.id,
    );
  const report = finishReport({
    scenario: sc.name,
    peripherals: sc.peripherals,
    startedAtMs,
    finishedAtMs: Date.now(),
    peakRssBytes: peakRss,
    devices: deviceReports,
    steps,
    assertions,
  });
  await writeJsonReport(join(o.outDir, 'report.json'), report);
  await writeFile(join(o.outDir, 'junit.xml'), renderJunit(report));
  await writeFile(join(o.outDir, 'timeline.svg'), renderTimelineSvg(report));
  return report;
}

type Check = (step: string, name: string, ok: boolean, message?: string, device?: string) => void;

/** The assertions of one step, from the rollout results and the device status before and after. */
export function stepAssertions(
  step: ScenarioStep,
  bundle: StepBundle,
  chosen: ReadonlyArray<{ id: string }>,
  results: readonly DeviceResult[],
  before: ReadonlyMap<string, DeviceFirmwareStatus | null>,
  after: ReadonlyMap<string, DeviceFirmwareStatus | null>,
  check: Check,
  extra: {
    cuts: ReadonlyMap<string, string>;
    failover: boolean;
    proxyCuts: number;
    rangeRequests: number;
    degraded?: ReadonlyMap<string, DegradeEvidence>;
  },
): void {
  const s = step.name;
  const byId = new Map(results.map((r) => [r.id, r]));
  const want: Partial<Record<ScenarioStep['fault'], DeviceResult['state']>> = {
    none: 'committed',
    'network-cut': 'committed',
    'network-degrade': 'committed',
    'core-failover': 'committed',
    corrupt: 'refused',
    'foreign-key': 'refused',
    downgrade: 'refused',
    'bad-health': 'rolled-back',
  };
  for (const d of chosen) {
    const r = byId.get(d.id);
    const b = before.get(d.id) ?? null;
    const a = after.get(d.id) ?? null;
    const expected = want[step.fault];
    if (expected)
      check(
        s,
        `rollout result is ${expected}`,
        r?.state === expected,
        `got ${r?.state ?? 'nothing'}${r?.reason ? ` (${r.reason})` : ''}`,
        d.id,
      );
    else
      check(
        s,
        'rollout reached a final result',
        r !== undefined && r.state !== 'timeout' && r.state !== 'pending',
        `got ${r?.state ?? 'nothing'}`,
        d.id,
      );
    check(
      s,
      'back on a committed slot',
      settled(a),
      `phase ${a?.phase ?? 'unreachable'}, booted ${a?.bootedSlot}, primary ${a?.primarySlot}`,
      d.id,
    );
    if (bundle.expect === 'new-version')
      check(
        s,
        `runs ${bundle.version}`,
        a?.version === bundle.version,
        `runs ${a?.version ?? 'nothing'}`,
        d.id,
      );
    else if (bundle.expect === 'unchanged') {
      check(
        s,
        'version unchanged',
        a !== null && a.version === b?.version,
        `was ${b?.version}, now ${a?.version}`,
        d.id,
      );
      check(
        s,
        'slots unchanged',
        a !== null && b !== null && a.primarySlot === b.primarySlot && a.bootedSlot === b.bootedSlot,
        `was ${b?.bootedSlot}/${b?.primarySlot}, now ${a?.bootedSlot}/${a?.primarySlot}`,
        d.id,
      );
    } else
      check(
        s,
        'runs the old or the new version',
        a !== null && (a.version === b?.version || a.version === bundle.version),
        `runs ${a?.version}`,
        d.id,
      );
    if (step.fault === 'power-cut')
      check(
        s,
        'power was cut during the install',
        extra.cuts.has(d.id),
        'the install never reached the chosen phase',
        d.id,
      );
  }
  if (step.fault === 'network-cut') {
    check(
      s,
      'download connections were cut',
      extra.proxyCuts >= chosen.length,
      `${extra.proxyCuts} cuts for ${chosen.length} devices`,
    );
    check(
      s,
      'devices resumed by HTTP Range',
      extra.rangeRequests >= chosen.length,
      `${extra.rangeRequests} range requests`,
    );
  }
  if (step.fault === 'network-degrade')
    for (const d of chosen) {
      const e = extra.degraded?.get(d.id);
      check(
        s,
        'link shaped mid-download',
        !!e && e.appliedAtMs !== null && e.appliedAtBytes > 0 && e.appliedAtBytes < e.size,
        e?.error ?? `shaper applied after ${e?.appliedAtBytes ?? 0} of ${e?.size ?? 0} bytes`,
        d.id,
      );
      // The rest of the bundle crossed the shaper: its counters saw it, and the download
      // could not finish faster than the shaped rate allows (less the socket buffers' share).
      const rest = e ? e.size - e.appliedAtBytes : 0;
      check(
        s,
        'the rest of the download went through the shaped link',
        !!e?.stats && e.stats.sentBytes >= rest * 0.5 && e.stats.overlimits > 0,
        `tbf sent ${e?.stats?.sentBytes ?? 0} bytes, overlimits ${e?.stats?.overlimits ?? 0}, rest ${rest}`,
        d.id,
      );
      const tookMs =
        e && e.verifiedAtMs !== null && e.appliedAtMs !== null ? e.verifiedAtMs - e.appliedAtMs : null;
      check(
        s,
        'download slowed to the shaped rate and still completed',
        tookMs !== null && tookMs >= ((rest * 8) / DEGRADED_KBIT) * 0.5,
        `verified ${tookMs ?? '-'} ms after shaping; ${rest} bytes at ${DEGRADED_KBIT} kbit/s take ${Math.round((rest * 8) / DEGRADED_KBIT)} ms`,
        d.id,
      );
    }
  if (step.fault === 'core-failover')
    check(s, 'primary coordinator killed mid-rollout, backup finished', extra.failover);
}

/** The shaped rate of a degraded link (kbit/s). */
const DEGRADED_KBIT = 2000;

export interface DegradeEvidence {
  appliedAtMs: number | null;
  appliedAtBytes: number;
  error: string | null;
  stats: TbfStats | null;
  /** When the device logged the bundle verified (the download done), after the shaping. */
  verifiedAtMs: number | null;
  size: number;
}
