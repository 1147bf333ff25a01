/**
 * The control-link methods. Each handler gets the session's context and the raw params, checks
 * the params (RpcError -32602 naming the field) and returns the result (or a promise of it).
 * `write: true` methods are refused with NOT_OWNER (20) on connections of a Core that does not
 * own the peripheral. Every method is documented in docs/control-link.md.
 */
import type { ClockSource } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { DesignInfo, StateStore } from '../config/state-store.js';
import type { SerialSettings, StreamOpenRequest } from './apis.js';
import { ChangeGroup } from './change-groups.js';
import {
  optBoolean,
  optNumber,
  optString,
  paramsObject,
  reqString,
  RpcError,
  RPC_ERR,
  stringList,
} from './jsonrpc.js';
import { MAX_RAMP_SECONDS } from './registry.js';
import type { ControlService, Session } from './service.js';

export interface MethodContext {
  service: ControlService;
  session: Session;
  state: StateStore;
  clock: ClockSource;
  board: Readonly<BoardConfig>;
}

export interface MethodSpec {
  write: boolean;
  run(ctx: MethodContext, params: unknown): unknown;
}

const notAvailable = (what: string): RpcError =>
  new RpcError(RPC_ERR.NOT_AVAILABLE, `${what} is not available on this peripheral`);

function controlValues(ctx: MethodContext, names: string[]): unknown[] {
  return names.map((n) => {
    const { snapshot } = ctx.service.registry.read(n);
    return {
      Name: snapshot.Name,
      Value: snapshot.Value,
      String: snapshot.String,
      Position: snapshot.Position,
    };
  });
}

function groupOf(ctx: MethodContext, p: Record<string, unknown>, create = false): ChangeGroup {
  const id = reqString(p, 'Id', 64);
  let g = ctx.session.groups.get(id);
  if (!g && create) {
    if (ctx.session.groups.size >= ctx.service.options.maxChangeGroups) {
      throw new RpcError(RPC_ERR.CHANGE_GROUPS_EXHAUSTED, 'Change groups exhausted on this connection');
    }
    g = { group: new ChangeGroup(id), timer: null, anchorMs: 0 };
    ctx.session.groups.set(id, g);
  }
  if (!g) throw new RpcError(RPC_ERR.UNKNOWN_CHANGE_GROUP, `Unknown change group ${id}`);
  return g.group;
}

/** Resolve names to their registered spelling; unknown names are an error listing them. */
function knownNames(ctx: MethodContext, names: string[]): string[] {
  const unknown = names.filter((n) => !ctx.service.registry.has(n));
  if (unknown.length > 0) {
    throw new RpcError(RPC_ERR.UNKNOWN_CONTROL, `Unknown control(s): ${unknown.slice(0, 10).join(', ')}`, {
      Unknown: unknown,
    });
  }
  return names.map((n) => ctx.service.registry.read(n).snapshot.Name);
}

function serialSettings(p: Record<string, unknown>): Partial<SerialSettings> {
  const out: Partial<SerialSettings> = {};
  const baud = optNumber(p, 'BaudRate', 50, 4_000_000);
  if (baud !== undefined) {
    if (!Number.isInteger(baud)) throw new RpcError(RPC_ERR.INVALID_PARAMS, 'BaudRate must be an integer');
    out.baudRate = baud;
  }
  if (p['DataBits'] !== undefined) {
    if (![5, 6, 7, 8].includes(p['DataBits'] as number)) {
      throw new RpcError(RPC_ERR.INVALID_PARAMS, 'DataBits must be 5, 6, 7 or 8');
    }
    out.dataBits = p['DataBits'] as 5 | 6 | 7 | 8;
  }
  if (p['Parity'] !== undefined) {
    if (!['none', 'even', 'odd', 'mark', 'space'].includes(p['Parity'] as string)) {
      throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Parity must be none, even, odd, mark or space');
    }
    out.parity = p['Parity'] as SerialSettings['parity'];
  }
  if (p['StopBits'] !== undefined) {
    if (![1, 1.5, 2].includes(p['StopBits'] as number)) {
      throw new RpcError(RPC_ERR.INVALID_PARAMS, 'StopBits must be 1, 1.5 or 2');
    }
    out.stopBits = p['StopBits'] as 1 | 1.5 | 2;
  }
  return out;
}

function portInfo(i: import('./apis.js').SerialPortInfo): Record<string, unknown> {
  return {
    Name: i.name,
    Path: i.path,
    Open: i.open,
    BaudRate: i.baudRate,
    DataBits: i.dataBits,
    Parity: i.parity,
    StopBits: i.stopBits,
  };
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function wrapApiError(code: number) {
  return (err: unknown): never => {
    const c = (err as { code?: unknown }).code;
    throw new RpcError(
      code,
      err instanceof Error ? err.message : String(err),
      typeof c === 'string' ? { Code: c } : undefined,
    );
  };
}

export const METHODS: Record<string, MethodSpec> = {
  NoOp: { write: false, run: () => ({}) },

  'Status.Get': {
    write: false,
    run(ctx) {
      const s = ctx.state.get();
      const owner = ctx.service.owner;
      return {
        Name: ctx.service.options.deviceName?.() ?? s.name ?? '',
        Platform: ctx.board.platform,
        PartNumber: ctx.board.partNumber,
        Model: ctx.board.model,
        Firmware: ctx.service.options.firmwareVersion,
        State: s.design ? 'Active' : 'Idle',
        DesignName: s.design?.name ?? '',
        DesignCode: s.design?.code ?? '',
        Role: s.design?.role ?? '',
        SecureComm: ctx.service.secure(),
        Transport: ctx.session.transport,
        Trusted: ctx.session.trusted,
        Owned: owner !== null,
        IsOwner: owner !== null && owner.key === ctx.session.key,
        CanWrite: ctx.service.canWrite(ctx.session),
        Clients: ctx.service.sessions.size,
        UptimeS: ctx.service.uptimeS(),
      };
    },
  },

  'Peripheral.Identify': {
    write: false,
    run(ctx, params) {
      const p = paramsObject(params);
      const seconds = optNumber(p, 'Seconds', 0, 3600) ?? 10;
      if (!ctx.service.hooks.onIdentify) throw notAvailable('Identify');
      ctx.service.hooks.onIdentify(seconds);
      return { Seconds: seconds };
    },
  },

  'Design.Assign': {
    write: true,
    async run(ctx, params) {
      const p = paramsObject(params);
      const design: DesignInfo = {
        name: reqString(p, 'Name', 256),
        code: reqString(p, 'Code', 64),
        role: reqString(p, 'Role', 64),
        primary: optBoolean(p, 'Primary') ?? true,
        redundant: optBoolean(p, 'Redundant') ?? false,
      };
      if (!/^[A-Za-z0-9_-]+$/.test(design.code) || !/^[A-Za-z0-9_.-]+$/.test(design.role)) {
        throw new RpcError(
          RPC_ERR.INVALID_PARAMS,
          'Code and Role must be letters, digits, _ - (and . in Role)',
        );
      }
      const coreName = optString(p, 'Core', 64) ?? ctx.session.remote;
      const svc = ctx.service;
      svc.owner = { key: ctx.session.key, coreName, sessionId: ctx.session.id, lostAtMs: null };
      svc.notePresence('design assigned');
      await svc.persist(() =>
        ctx.state.update((s) => {
          s.design = design;
        }),
      );
      await svc.autoTrust(ctx.session, coreName);
      svc.updateStatus();
      svc.hooks.onDesignChanged?.(ctx.state.get().design);
      return { Owner: true, Trusted: ctx.session.trusted, SecureComm: svc.secure() };
    },
  },

  'Design.Release': {
    write: true,
    async run(ctx) {
      const svc = ctx.service;
      svc.owner = null;
      svc.notePresence('design released');
      await svc.persist(() =>
        ctx.state.update((s) => {
          s.design = null;
        }),
      );
      svc.updateStatus();
      svc.hooks.onDesignChanged?.(null);
      return {};
    },
  },

  'Controls.List': { write: false, run: (ctx) => ctx.service.registry.list() },

  'Controls.Get': {
    write: false,
    run(ctx, params) {
      const names = Array.isArray(params)
        ? stringList(params, 'params')
        : stringList(paramsObject(params)['Names'], 'Names');
      return controlValues(ctx, knownNames(ctx, names));
    },
  },

  'Controls.Set': {
    write: true,
    run(ctx, params) {
      const p = paramsObject(params);
      const items: Record<string, unknown>[] = Array.isArray(p['Controls'])
        ? (p['Controls'] as Record<string, unknown>[])
        : [p];
      if (items.length === 0 || items.length > 10000) {
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Controls must hold 1..10000 items');
      }
      // Check everything first so a bad item changes nothing.
      const checked = items.map((raw) => {
        const item = paramsObject(raw);
        const name = reqString(item, 'Name', 64);
        if (!('Value' in item)) throw new RpcError(RPC_ERR.INVALID_PARAMS, `Value missing for ${name}`);
        const ramp = optNumber(item, 'Ramp', 0, MAX_RAMP_SECONDS) ?? 0;
        knownNames(ctx, [name]);
        return { name, value: item['Value'], ramp };
      });
      const reg = ctx.service.registry;
      for (const c of checked) {
        const { snapshot } = reg.read(c.name);
        if (!snapshot.Writable)
          throw new RpcError(RPC_ERR.READ_ONLY_CONTROL, `${snapshot.Name} is read-only`);
      }
      const out = checked.map((c) => {
        const s = reg.setFromLink(c.name, c.value, c.ramp);
        return { Name: s.Name, Value: s.Value, String: s.String, Position: s.Position };
      });
      return Array.isArray(p['Controls']) ? out : out[0];
    },
  },

  'ChangeGroup.AddControl': {
    write: false,
    run(ctx, params) {
      const p = paramsObject(params);
      const names = knownNames(ctx, stringList(p['Controls'], 'Controls'));
      const g = groupOf(ctx, p, true);
      g.add(names);
      return { Id: g.id, Count: g.size };
    },
  },
  'ChangeGroup.Remove': {
    write: false,
    run(ctx, params) {
      const p = paramsObject(params);
      const g = groupOf(ctx, p);
      g.remove(
        stringList(p['Controls'], 'Controls').map((n) =>
          ctx.service.registry.has(n) ? ctx.service.registry.read(n).snapshot.Name : n,
        ),
      );
      return { Id: g.id, Count: g.size };
    },
  },
  'ChangeGroup.Poll': {
    write: false,
    run(ctx, params) {
      const g = groupOf(ctx, paramsObject(params));
      return { Id: g.id, Changes: g.poll(ctx.service.registry) };
    },
  },
  'ChangeGroup.AutoPoll': {
    write: false,
    run(ctx, params) {
      const p = paramsObject(params);
      const g = groupOf(ctx, p);
      const rate = optNumber(p, 'Rate', 0.01, 3600);
      if (rate === undefined)
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Rate (seconds, 0.01..3600) is required');
      ctx.service.startAutoPoll(ctx.session, g.id, rate);
      return { Id: g.id, Rate: rate };
    },
  },
  'ChangeGroup.Clear': {
    write: false,
    run(ctx, params) {
      const g = groupOf(ctx, paramsObject(params));
      g.clear();
      return { Id: g.id };
    },
  },
  'ChangeGroup.Invalidate': {
    write: false,
    run(ctx, params) {
      const g = groupOf(ctx, paramsObject(params));
      g.invalidate();
      return { Id: g.id };
    },
  },
  'ChangeGroup.Destroy': {
    write: false,
    run(ctx, params) {
      const p = paramsObject(params);
      const g = groupOf(ctx, p);
      const entry = ctx.session.groups.get(g.id)!;
      if (entry.timer) ctx.clock.clearTimeout(entry.timer);
      ctx.session.groups.delete(g.id);
      return { Id: g.id };
    },
  },

  'Stream.List': {
    write: false,
    run(ctx) {
      if (!ctx.service.stream) throw notAvailable('Audio streaming');
      return ctx.service.stream.list();
    },
  },
  'Stream.Open': {
    write: true,
    run(ctx, params) {
      const api = ctx.service.stream;
      if (!api) throw notAvailable('Audio streaming');
      const p = paramsObject(params);
      const direction = reqString(p, 'Direction', 16);
      if (direction !== 'send' && direction !== 'receive') {
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Direction must be send or receive');
      }
      const format = optString(p, 'Format', 16) ?? 'qlan';
      if (format !== 'qlan' && format !== 'aes67')
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Format must be qlan or aes67');
      const address = reqString(p, 'Address', 15);
      if (!IPV4_RE.test(address))
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Address must be an IPv4 address');
      const port = optNumber(p, 'Port', 1024, 65535);
      if (port === undefined || !Number.isInteger(port))
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Port must be an integer 1024..65535');
      const ch = p['Channels'];
      if (
        !Array.isArray(ch) ||
        ch.length < 1 ||
        ch.length > 16 ||
        !ch.every((c) => Number.isInteger(c) && c >= 1 && c <= 64)
      ) {
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Channels must list 1..16 channel numbers (1-based)');
      }
      const request: StreamOpenRequest = {
        direction,
        format,
        address,
        port,
        channels: ch as number[],
        core: ctx.session.key,
      };
      return api.open(request).then((info) => {
        ctx.session.streams.add(info.streamId);
        return { StreamId: info.streamId, ...info };
      }, wrapApiError(RPC_ERR.STREAM_FAILED));
    },
  },
  'Stream.Close': {
    write: true,
    run(ctx, params) {
      const api = ctx.service.stream;
      if (!api) throw notAvailable('Audio streaming');
      const id = reqString(paramsObject(params), 'StreamId', 64);
      return api.close(id).then(() => {
        ctx.session.streams.delete(id);
        return {};
      }, wrapApiError(RPC_ERR.STREAM_FAILED));
    },
  },

  'Serial.List': {
    write: false,
    run(ctx) {
      if (!ctx.service.serial) throw notAvailable('Serial bridging');
      return ctx.service.serial.list().map(portInfo);
    },
  },
  'Serial.Open': {
    write: true,
    async run(ctx, params) {
      const api = ctx.service.serial;
      if (!api) throw notAvailable('Serial bridging');
      const p = paramsObject(params);
      const name = reqString(p, 'Name', 64);
      const info = await api.open(name, serialSettings(p));
      ctx.session.serialPorts.add(info.name);
      return portInfo(info);
    },
  },
  'Serial.Configure': {
    write: true,
    async run(ctx, params) {
      const api = ctx.service.serial;
      if (!api) throw notAvailable('Serial bridging');
      const p = paramsObject(params);
      return portInfo(await api.configure(reqString(p, 'Name', 64), serialSettings(p)));
    },
  },
  'Serial.Write': {
    write: true,
    async run(ctx, params) {
      const api = ctx.service.serial;
      if (!api) throw notAvailable('Serial bridging');
      const p = paramsObject(params);
      const name = reqString(p, 'Name', 64);
      const data = p['Data'];
      if (typeof data !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 !== 0) {
        throw new RpcError(RPC_ERR.INVALID_PARAMS, 'Data must be base64');
      }
      const bytes = Buffer.from(data, 'base64');
      await api.write(name, bytes);
      return { Bytes: bytes.length };
    },
  },
  'Serial.Close': {
    write: true,
    async run(ctx, params) {
      const api = ctx.service.serial;
      if (!api) throw notAvailable('Serial bridging');
      const name = reqString(paramsObject(params), 'Name', 64);
      await api.close(name);
      for (const s of ctx.service.sessions.values()) s.serialPorts.delete(name);
      return {};
    },
  },

  'Firmware.Status': {
    write: false,
    run(ctx) {
      const f = ctx.service.hooks.firmwareStatus;
      if (!f) throw notAvailable('Firmware status');
      return f();
    },
  },

  'Clock.Status': {
    write: false,
    run(ctx) {
      const f = ctx.service.hooks.clockStatus;
      if (!f) throw notAvailable('Clock status');
      return f();
    },
  },
};
