import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import { StateStore } from '../../../firmware/config/state-store.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetBinding, NetconfigService } from '../../../firmware/netconfig/index.js';
import { findProjectRoot } from '../../../firmware/paths.js';
import { PeripheralManager, type ManagerHooks } from '../../../firmware/peripheral-manager/index.js';
import type { FirmwareSlotStatus } from '../../../firmware/peripheral-manager/service.js';

async function rig(t: { teardown(fn: () => unknown): void }, hooks: ManagerHooks) {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-fw-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const clock = new FakeClock(0, Date.UTC(2026, 5, 1));
  const logger = createMemoryLogger();
  const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'), {
    lanAAddress: '127.0.3.201',
  });
  const state = await StateStore.open({ dir: stateDir, logger, clock });
  const netconfig = await NetconfigService.open({
    binding: new FakeNetBinding(),
    clock,
    logger,
    stateDir,
    root: '/fake',
    backend: 'systemd-networkd',
    interfaces: { lanA: 'lo', lanB: null },
    defaults: { hostname: 'qp', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
  });
  const mgr = await PeripheralManager.create({
    httpPort: 0,
    httpsPort: 0,
    host: '127.0.3.201',
    board,
    state,
    stateDir,
    logger,
    clock,
    netconfig,
    name: 'qp-fw',
    version: '9.9.9',
    interfaces: () => ({}),
    hooks,
  });
  t.teardown(() => mgr.stop());
  const csrfLogin = await mgr.https.inject({
    method: 'POST',
    url: '/api/v1/auth/setup',
    headers: { host: '127.0.3.201', origin: 'https://127.0.3.201' },
    payload: { password: 'correct horse' },
  });
  const cookie = String(csrfLogin.headers['set-cookie']).split(';')[0]!;
  const get = async (url: string, auth = true) =>
    mgr.https.inject({ method: 'GET', url, headers: { host: '127.0.3.201', ...(auth ? { cookie } : {}) } });
  return { mgr, get, state };
}

t.test('firmware slot status from the hook: /status, /firmware, live frames', async (t) => {
  let fw: FirmwareSlotStatus = {
    version: '1.4.0',
    bootedSlot: 'b',
    primarySlot: 'a',
    phase: 'trial',
    trialSlot: 'b',
  };
  const r = await rig(t, { status: () => ({ firmware: fw }) });
  let res = await r.get('/api/v1/status');
  t.equal(res.statusCode, 200);
  t.same(res.json().firmware, fw);
  res = await r.get('/api/v1/firmware');
  t.same(res.json(), { ...fw, uploadAvailable: false });

  fw = { version: '1.4.0', bootedSlot: 'b', primarySlot: 'b', phase: 'idle', trialSlot: null };
  t.same((await r.get('/api/v1/status')).json().firmware, fw, 'asked on every request (commit shows up)');

  t.equal((await r.get('/api/v1/firmware', false)).statusCode, 401, 'not public by default');
  await r.state.update((s) => {
    s.settings.publicStatus = true;
  });
  t.same((await r.get('/api/v1/firmware', false)).json().primarySlot, 'b', 'public with publicStatus');
  const xml = await r.get('/cgi-bin/status_xml');
  t.match(xml.body, /<firmware_version>1\.4\.0<\/firmware_version>/, 'legacy XML keeps the version');
});

t.test('without a firmware hook: the running version and unknown slots', async (t) => {
  const r = await rig(t, {});
  t.same((await r.get('/api/v1/status')).json().firmware, {
    version: '9.9.9',
    bootedSlot: null,
    primarySlot: null,
    phase: 'idle',
    trialSlot: null,
  });
});

t.test('the UI shows the slots', async (t) => {
  const r = await rig(t, {});
  const js = (await r.get('/ui/app.js', false)).body;
  for (const label of ['Booted slot', 'Primary slot', 'Trial slot', "'Slots'", 'slotText(st.firmware)'])
    t.ok(js.includes(label), label);
  t.notOk(js.includes('f.slots'), 'old slot list gone');
});
