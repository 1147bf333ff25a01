/**
 * The composition root: the one place where real bindings are chosen and
 * services are wired. `startPeripheral` parses the board config (once,
 * frozen), opens the device state, starts the services, tells systemd
 * READY=1, pings the watchdog while healthy, and stops cleanly.
 */
import type { BoardConfig, LanConfig } from './config/board-types.js';
import { loadBoardConfig } from './config/board-config.js';
import { StateStore } from './config/state-store.js';
import { createSystemClock, type ClockSource, type TimerHandle } from './clock/clock.js';
import { defaultDeviceName } from './device-name.js';
import { createJsonLogger, type Logger } from './log/logger.js';
import { createNodeDatagramBinding, type DatagramBinding } from './net/datagram-binding.js';
import { resolveLanAddress, systemInterfaceLister, type InterfaceLister } from './net/interfaces.js';
import { join } from 'node:path';
import type { AudioEngine, MediaClock } from './audio/index.js';
import type { ControlService } from './control/service.js';
import { packageVersion } from './paths.js';
import type { PeripheralManager } from './peripheral-manager/index.js';
import type { UpdateService } from './update/index.js';
import { deviceRef, controlRef } from './qdp/qdp-query.js';
import { QdpService, type LanId, type QdpSelfDescription } from './qdp/service.js';
import { HealthRegistry, eventLoopLagCheck } from './systemd/health.js';
import { createNotifyTransport, SystemdNotifier } from './systemd/sd-notify.js';
import { LISTEN_ENV_KEYS, managerListenFds, parseListenFds } from './systemd/listen-fds.js';
import { watchdogIntervalMs, WatchdogPinger } from './systemd/watchdog.js';

export interface StartOptions {
  boardFile: string;
  stateDir: string;
  /** Override the device name for this run (not persisted). */
  name?: string;
  /** Override LAN A's address (bench: several peripherals on 127.0.0.N). */
  address?: string;
  /** Override the QDP multicast TTL for this run. */
  qdpTtl?: number;
  /** Control link port (default 1700). */
  controlPort?: number;
  /** Peripheral Manager ports (default 80/443; the virtual board 8080/8443). */
  httpPort?: number;
  httpsPort?: number;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  clock?: ClockSource;
  datagrams?: DatagramBinding;
  interfaces?: InterfaceLister;
}

export interface RunningPeripheral {
  readonly board: Readonly<BoardConfig>;
  readonly name: string;
  readonly state: StateStore;
  readonly qdp: QdpService;
  readonly control: ControlService;
  readonly audio: AudioEngine;
  readonly manager: PeripheralManager;
  readonly update: UpdateService;
  readonly notifier: SystemdNotifier;
  readonly startedAtMs: number;
  stop(reason: string): Promise<void>;
}

export async function startPeripheral(options: StartOptions): Promise<RunningPeripheral> {
  const env = options.env ?? process.env;
  const clock = options.clock ?? createSystemClock();
  const t0 = clock.monotonicMs();
  const logger =
    options.logger ?? createJsonLogger({ level: env['QPERIPH_LOG_LEVEL'] === 'debug' ? 'debug' : 'info' });
  const log = logger.child({ module: 'main' });
  log.info('starting', { version: packageVersion(), pid: process.pid, node: process.version });

  // systemd socket activation (qperiph-manager*.socket): the Manager's 80/443 sockets by name.
  const listenFds = managerListenFds(parseListenFds(env, process.pid));
  if (env === process.env) for (const k of LISTEN_ENV_KEYS) delete process.env[k];
  if (listenFds.unused.length > 0) log.warn('listen_fds_unused', { fds: listenFds.unused });

  const board = loadBoardConfig(options.boardFile, options.address ? { lanAAddress: options.address } : {});
  const interfaces = options.interfaces ?? systemInterfaceLister;
  const state = await StateStore.open({ dir: options.stateDir, logger });

  let name = options.name ?? state.get().name;
  if (!name) {
    const mac = resolveLanAddress(board.network.lanA, interfaces)?.mac ?? null;
    name = defaultDeviceName(board.hostnamePrefix, mac);
    await state.update((s) => {
      s.name = name!;
    });
    log.info('name_assigned', { name });
  }
  const deviceName = name;

  const notifier = new SystemdNotifier(createNotifyTransport(env, logger), logger);

  const describe = (): QdpSelfDescription => {
    const s = state.get();
    const ref = deviceRef('ioframe', deviceName);
    return {
      device: {
        name: deviceName,
        type: 'ioframe',
        platform: board.platform,
        partNumber: board.partNumber,
        ref,
        isVirtual: board.isVirtual,
        periphCfgUrl: '/#network',
        secureComm: s.trustedCores.length > 0 ? 'enabled' : 'disabled',
      },
      control: s.design
        ? {
            role: s.design.role,
            designPretty: s.design.name,
            designCode: s.design.code,
            primary: s.design.primary,
            redundant: s.design.redundant,
            deviceRef: ref,
            ref: controlRef(s.design.code, s.design.role),
          }
        : null,
    };
  };

  let firstAnnounceLogged = false;
  const lans: Array<{ id: LanId; config: LanConfig }> = [{ id: 'a', config: board.network.lanA }];
  if (board.network.lanB) lans.push({ id: 'b', config: board.network.lanB });
  const qdp = new QdpService({
    binding: options.datagrams ?? createNodeDatagramBinding(),
    clock,
    logger,
    interfaces,
    lans,
    describe,
    ttl: options.qdpTtl ?? state.get().settings.qdpTtl,
    // Spin the last 2 ms before each grid point for a tight announce grid; many-peripheral benches
    // on one machine turn it off (QPERIPH_QDP_SPIN_MS=0), where a hundred spinners cost a core.
    spinLeadMs: Math.max(0, Math.min(10, Number(env['QPERIPH_QDP_SPIN_MS'] ?? 2) || 0)),
    onAnnounced: ({ lan, atMs }) => {
      if (firstAnnounceLogged) return;
      firstAnnounceLogged = true;
      log.info('qdp_first_announce', { lan, sinceStartMs: Math.round((atMs - t0) * 10) / 10 });
    },
    onCoreEvent: (ev) => {
      if (ev.event === 'core_discovered')
        void notifier.status(`announcing as ${deviceName}; heard Core ${ev.core.name}`);
    },
  });
  await qdp.start();

  // The first announcement is out. The other services' modules load only now, so discovery
  // does not wait for them (the web stack and X.509 code take most of a second to load).
  const [
    {
      AlsaAudioBinding,
      AudioEngine,
      createAudioDatagramBinding,
      createFreeRunningClock,
      Ptp4lClock,
      VirtualAudioBinding,
    },
    { createStreamApi, registerAudioControls },
    { ControlRegistry },
    { ControlService },
    { FailoverMute },
    { GpioService },
    { createGpioBinding, createSerialBinding },
    { SerialBridge },
    { PeripheralManager },
    { DeviceIdentity },
    { createBundleUploadHandler, createUpdateService },
    { createCoreApiHandler },
    { createConfigApplier },
    { createNetconfigForBoard, defaultNetworkSettings },
  ] = await Promise.all([
    import('./audio/index.js'),
    import('./audio/control-bridge.js'),
    import('./control/registry.js'),
    import('./control/service.js'),
    import('./control/failover-mute.js'),
    import('./io/gpio-service.js'),
    import('./io/select.js'),
    import('./io/serial-bridge.js'),
    import('./peripheral-manager/index.js'),
    import('./pki/identity.js'),
    import('./update/index.js'),
    import('./update/core-api.js'),
    import('./update/core-config.js'),
    import('./netconfig/index.js'),
  ]);

  // Device identity (TLS key + certificate) for the manager and the control link.
  const lanAddrs = Object.values(qdp.lanAddresses()).filter((a): a is string => !!a);
  const identity = await DeviceIdentity.open({
    dir: join(options.stateDir, 'pki'),
    hostname: deviceName,
    addresses: lanAddrs,
    clock,
    logger,
  });

  // Media clock: ptp4l on real boards (falls back to free-running, and says so), free-running on
  // the virtual board unless QPERIPH_PTP=1.
  let mediaClock: MediaClock = createFreeRunningClock(board.ptp.domain);
  const wantPtp = board.ptp.timestamping !== 'none' && (!board.isVirtual || env['QPERIPH_PTP'] === '1');
  if (wantPtp) {
    const runDir = env['RUNTIME_DIRECTORY'] ?? options.stateDir;
    const ptp = new Ptp4lClock({
      ptp: board.ptp,
      interface: board.network.lanA.interface,
      udsPath: join(runDir, 'ptp4l.sock'),
      configPath: join(options.stateDir, 'ptp4l.conf'),
      logger: logger.child({ module: 'ptp' }),
    });
    try {
      await ptp.start();
      mediaClock = ptp;
    } catch (err) {
      log.warn('ptp_unavailable', { err, fallback: 'free-running' });
      await ptp.close().catch(() => undefined);
    }
  }

  // The audio engine: ALSA (or the virtual card) <-> Q-LAN / AES67 RTP on the media clock.
  const cap = board.audio.capture;
  const audio = new AudioEngine({
    board,
    audio:
      board.audio.binding === 'alsa'
        ? new AlsaAudioBinding({
            logger: logger.child({ module: 'alsa' }),
            format: cap?.sampleFormat ?? 'S24_3LE',
            periodTimeUs: cap?.periodTimeUs ?? 1000,
            bufferTimeUs: cap?.bufferTimeUs ?? 4000,
          })
        : new VirtualAudioBinding({ clock, record: false }),
    datagram: createAudioDatagramBinding(),
    clock,
    mediaClock,
    logger: logger.child({ module: 'audio' }),
    lanA: qdp.lanAddresses().a ?? '0.0.0.0',
    lanB: qdp.lanAddresses().b,
    // Input meters stay live without a stream, as on a real device; many-peripheral benches and
    // drills turn this off (QPERIPH_CAPTURE_WHEN_IDLE=0) so an idle peripheral runs no audio timers.
    captureWhenIdle: env['QPERIPH_CAPTURE_WHEN_IDLE'] !== '0',
    // SCHED_FIFO for the sender thread only (chrt on its TID); never on the virtual board.
    senderRtPriority: board.isVirtual ? null : Number(env['QPERIPH_AUDIO_RT_PRIORITY'] ?? 10) || null,
    // Many virtual peripherals streaming on one bench machine: QPERIPH_AUDIO_BUSY_WAIT=0 makes
    // the senders sleep to each deadline instead of spinning the last ~100 us (bench:core-stream).
    senderBusyWait: env['QPERIPH_AUDIO_BUSY_WAIT'] !== '0',
  });
  await audio.start();
  // A system clock step under the media clock (ptp4l's first synchronisation): the clock maps it
  // again, and every stream reopens on the new mapping.
  mediaClock.onEvent((e) => {
    if (e.event !== 'realigned') return;
    log.warn('media_clock_stepped', { stepMs: e.stepNs / 1e6 });
    void audio.realign().catch((err: unknown) => log.error('audio_realign_failed', { err }));
  });

  // Named controls, GPIO and serial I/O, and the control link on TCP 1700.
  const registry = new ControlRegistry({ clock });
  const audioControls = registerAudioControls(audio, registry, {
    input: board.audio.capture?.channels ?? 0,
    output: board.audio.playback?.channels ?? 0,
  });
  // Meter refresh period; drills of a hundred idle peripherals on one machine raise it
  // (QPERIPH_METER_MS, 20..5000 ms) so that idle timers do not add up to a core.
  const meterMs = Math.max(20, Math.min(5000, Number(env['QPERIPH_METER_MS'] ?? 100) || 100));
  let meterTimer: TimerHandle | null = null;
  const meterTick = (): void => {
    audioControls.refreshMeters();
    meterTimer = clock.setTimeout(meterTick, meterMs);
  };
  meterTick();
  const gpio = new GpioService({
    config: board.gpio,
    binding: createGpioBinding(board, { clock, logger }),
    registry,
    clock,
    logger,
  });
  await gpio.start();
  const serial = new SerialBridge({ ports: board.serial, binding: createSerialBinding(board), logger });
  // A design-assigned peripheral mutes its outputs while no Core is connected (Core failover).
  const failoverMute = new FailoverMute({
    outputs: board.audio.playback?.channels ?? 0,
    setMute: (ch, on) => audio.setMute('output', ch, on),
    userMute: (ch) => {
      const n = `audio.out.${ch + 1}.mute`;
      return registry.has(n) && registry.read(n).snapshot.Value === true;
    },
    hasDesign: () => state.get().design !== null,
  });
  const host = board.network.lanA.address ?? '0.0.0.0';
  const control = new ControlService({
    board,
    state,
    logger,
    clock,
    registry,
    serial,
    port: options.controlPort ?? 1700,
    host,
    identity: () => identity.identity(),
    stream: createStreamApi(audio),
    deviceName: () => deviceName,
    firmwareVersion: packageVersion(),
    hooks: {
      onDesignChanged: () => qdp.announceNow(),
      onTrustChanged: () => qdp.announceNow(),
      onIdentify: (seconds) => gpio.identify(seconds),
      onCorePresence: (ev) => failoverMute.onPresence(ev),
      clockStatus: () => audio.clockStatus(),
    },
  });
  await control.start();
  const unwatchIdentity = identity.onChange(() => control.reloadIdentity());

  // Signed A/B updates: resumes or rolls back a half-done job; commits a trial once healthy.
  let stopSelf: (reason: string) => Promise<void> = async () => {};
  const health = new HealthRegistry();
  const update = createUpdateService({
    board,
    stateDir: options.stateDir,
    env,
    clock,
    logger,
    health: async () => health.evaluate().ok,
    pinnedCores: () => state.get().trustedCores.map((c) => c.fingerprint256),
    report: (o) => {
      logger.info('update_outcome', { ...o });
      control.notifyFirmware({
        State: o.result,
        ...(o.version ? { Version: o.version } : {}),
        ...(o.reason ? { Message: o.reason } : {}),
      });
    },
    // The new app slot runs after a restart; exit 75 so systemd (Restart=on-failure) starts us again.
    restartApp: () => {
      setTimeout(
        () => void stopSelf('update: restart into the new slot').finally(() => process.exit(75)),
        200,
      );
    },
  });

  // Firmware slots for the status page: read now and every 5 s (the status hook is synchronous).
  type SlotInfo = Awaited<ReturnType<UpdateService['slotStatus']>>;
  let slotInfo: SlotInfo | null = null;
  let slotTimer: TimerHandle | null = null;
  let slotsStopped = false;
  const refreshSlots = (): void => {
    void update
      .slotStatus()
      .then((s) => (slotInfo = s))
      .catch(() => undefined)
      .finally(() => {
        if (!slotsStopped) slotTimer = clock.setTimeout(refreshSlots, 5000);
      });
  };
  refreshSlots();

  // Network settings the Manager edits: a dry run on the virtual board, the real files + apply +
  // automatic revert (TCP probe of the gateways and the Core) on a real one.
  const netconfig = await createNetconfigForBoard(board, options.stateDir, env, {
    clock,
    logger,
    defaults: defaultNetworkSettings(board, deviceName),
    probeTargets: () => {
      const code = state.get().design?.code;
      const heard = qdp.cores();
      const ours = heard.filter((c) => code && c.designCode === code);
      return (ours.length > 0 ? ours : heard.slice(0, 4)).map((c) => ({ host: c.address, port: 443 }));
    },
  });

  // The Peripheral Manager on 80/443 (8080/8443 on the virtual board: no root needed).
  const manager = await PeripheralManager.create({
    netconfig,
    listenFds: { http: listenFds.http, https: listenFds.https },
    httpPort: options.httpPort ?? (board.isVirtual ? 8080 : 80),
    httpsPort: options.httpsPort ?? (board.isVirtual ? 8443 : 443),
    host,
    board,
    state,
    stateDir: options.stateDir,
    logger,
    clock,
    name: deviceName,
    interfaces,
    identity,
    version: packageVersion(),
    hooks: {
      identify: (on, seconds) => gpio.identify(on ? seconds : 0),
      meters: () => {
        const m = audio.meters();
        return [...m.input, ...m.output].map((x) => x.peakDb);
      },
      status: () => {
        const c = audio.clockStatus();
        return {
          ...(slotInfo ? { firmware: slotInfo } : {}),
          ptp: {
            state:
              c.state === 'locked' || c.state === 'master'
                ? 'locked'
                : c.source === 'free-running'
                  ? 'free-running'
                  : 'unlocked',
            offsetNs: c.offsetNs,
            grandmaster: c.grandmaster,
          },
          streams: audio.list().map((x) => ({
            name: x.id,
            direction: x.direction,
            channels: x.channels,
            state: 'running',
          })),
        };
      },
      bundleUpload: createBundleUploadHandler({ service: update }),
      // The Core's HTTPS API (firmware push/fetch, status, configuration), pinned by client cert.
      coreApi: createCoreApiHandler({
        service: update,
        trustedCores: () => state.get().trustedCores.map((c) => c.fingerprint256),
        healthy: async () => health.evaluate().ok,
        applyConfig: createConfigApplier(control, state),
        logger: logger.child({ module: 'core-api' }),
      }),
    },
  });
  const ports = await manager.start();

  health.register('qdp', () => qdp.health());
  health.register('control', () => control.health());
  // Event-loop delay sampling period (QPERIPH_LAG_RESOLUTION_MS, 1..1000, default 20): each sample is a wake-up.
  const lag = eventLoopLagCheck({
    resolutionMs: Math.max(1, Math.min(1000, Number(env['QPERIPH_LAG_RESOLUTION_MS'] ?? 20) || 20)),
  });
  health.register('event-loop', lag.check);

  const addresses = qdp.lanAddresses();
  const status = `announcing as ${deviceName} (${board.partNumber}) on LAN A ${addresses.a ?? 'down'}`;
  await notifier.ready(status);
  const startedAtMs = clock.monotonicMs();
  log.info('ready', {
    name: deviceName,
    board: board.id,
    lanA: addresses.a,
    lanB: addresses.b,
    controlPort: control.address()?.port ?? null,
    httpPort: ports.httpPort,
    httpsPort: ports.httpsPort,
    startupMs: Math.round((startedAtMs - t0) * 10) / 10,
  });

  // Never blocks READY: a trial slot waits for the health checks above before it commits.
  void update.start().catch((err: unknown) => log.error('update_resume_failed', { err }));

  const interval = watchdogIntervalMs(env);
  let pinger: WatchdogPinger | null = null;
  if (interval !== null) {
    pinger = new WatchdogPinger({
      notifier,
      clock,
      intervalMs: interval,
      healthCheck: () => health.evaluate(),
      logger,
    });
    pinger.start();
    log.info('watchdog_enabled', { intervalMs: interval });
  }

  let stopping: Promise<void> | null = null;
  const running: RunningPeripheral = {
    board,
    name: deviceName,
    state,
    qdp,
    control,
    audio,
    manager,
    update,
    notifier,
    startedAtMs,
    stop(reason: string): Promise<void> {
      stopping ??= (async () => {
        const s0 = clock.monotonicMs();
        log.info('stopping', { reason });
        await notifier.stopping(`stopping: ${reason}`);
        pinger?.stop();
        lag.stop();
        unwatchIdentity();
        if (meterTimer) clock.clearTimeout(meterTimer);
        slotsStopped = true;
        if (slotTimer) clock.clearTimeout(slotTimer);
        await Promise.allSettled([manager.stop(), control.stop(), qdp.stop()]);
        await audio.stop().catch(() => undefined);
        await mediaClock.close().catch(() => undefined);
        audioControls.unregister();
        await gpio.stop();
        await serial.closeAll();
        notifier.close();
        log.info('stopped', { reason, stopMs: Math.round((clock.monotonicMs() - s0) * 10) / 10 });
      })();
      return stopping;
    },
  };
  stopSelf = (reason) => running.stop(reason);
  return running;
}
