/**
 * End to end in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; never a
 * browser download) against the manager on 127.0.3.2 (ports 19081/19444): first-use password,
 * logout/login, certificate install, identify, live meters moving.
 * QP_SCREENSHOT_DIR=<dir> keeps screenshots of the status and certificate pages.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { StateStore } from '../../firmware/config/state-store.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { findProjectRoot } from '../../firmware/paths.js';
import { PeripheralManager } from '../../firmware/peripheral-manager/index.js';
import { createAuthority, issueCertificate } from '../../firmware/pki/index.js';

const HOST = '127.0.3.2';
const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

t.test(
  'manager UI in Chromium',
  { skip: !existsSync(CHROMIUM) && 'chromium not installed (apt-get install -y chromium)' },
  async (t) => {
    const stateDir = await mkdtemp(join(tmpdir(), 'qp-mgr-ui-'));
    t.teardown(() => rm(stateDir, { recursive: true, force: true }));
    const logger = createMemoryLogger();
    const clock = createSystemClock();
    const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'), {
      lanAAddress: HOST,
    });
    const state = await StateStore.open({ dir: stateDir, logger, clock });
    const identifyCalls: string[] = [];
    const mgr = await PeripheralManager.create({
      httpPort: 19081,
      httpsPort: 19444,
      host: HOST,
      board,
      state,
      stateDir,
      logger,
      clock,
      name: 'qperiph-ui',
      interfaces: () => ({
        lo: [{ address: HOST, netmask: '255.0.0.0', mac: '02:00:00:00:ab:cd', internal: true }],
      }),
      hooks: { identify: (on, s) => void identifyCalls.push(`${on}:${s}`) },
    });
    t.teardown(() => mgr.stop());
    await mgr.start();

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    t.teardown(() => browser.close());
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1100, height: 800 },
    });
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    const shots = process.env['QP_SCREENSHOT_DIR'];

    await page.goto(`https://${HOST}:19444/`);
    await page.locator('#setup-form').waitFor({ state: 'visible' });
    t.equal(await page.locator('#login-form').isVisible(), false, 'first use shows the set-password form');
    await page.getByLabel('New password').fill('correct horse');
    await page.getByLabel('Repeat password').fill('correct horse');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.locator('#app').waitFor({ state: 'visible' });
    await page.locator('#status-list dd', { hasText: 'qperiph-ui' }).first().waitFor();
    t.equal(await page.locator('#dev-name').textContent(), 'qperiph-ui');
    t.match(await page.locator('#status-list').textContent(), /unlocked/, 'PTP shown as unlocked');

    // live meters move
    const meter = page.locator('#meters .bar').first();
    await meter.waitFor();
    const first = await meter.getAttribute('aria-valuenow');
    // Polled from here: a string predicate would be eval'd in the page, which its CSP forbids
    // (newer Chromium enforces that for injected predicates too).
    for (let i = 0; i < 100 && (await meter.getAttribute('aria-valuenow')) === first; i++)
      await new Promise((r) => setTimeout(r, 100));
    t.not(await meter.getAttribute('aria-valuenow'), first, 'meter value changed');
    if (shots) await page.screenshot({ path: join(shots, 'manager-status.png'), fullPage: true });

    // logout, login
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.getByLabel('Password', { exact: true }).fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#notice', { hasText: 'wrong password' }).waitFor();
    await page.getByLabel('Password', { exact: true }).fill('correct horse');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#app').waitFor({ state: 'visible' });

    // certificate install
    await page.getByRole('link', { name: 'Certificates' }).click();
    await page.locator('#cert-info dd', { hasText: 'Self-signed' }).waitFor();
    const now = Date.now();
    const ca = await createAuthority(
      'UI Test CA',
      new Date(now - 86_400_000),
      new Date(now + 30 * 86_400_000),
    );
    const leaf = await issueCertificate(ca, {
      subjectKeyPem: mgr.identity().key,
      commonName: 'qperiph-ui',
      ips: [HOST],
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 86_400_000),
    });
    await page.locator('#cert-pem').fill('garbage');
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.locator('#notice.error').waitFor();
    t.equal(mgr.ctx.identity.info().kind, 'self-signed', 'bad paste changed nothing');
    await page.locator('#cert-pem').fill(leaf + ca.certPem);
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.locator('#cert-info dd', { hasText: 'CA-signed (installed)' }).waitFor();
    t.equal(mgr.ctx.identity.info().kind, 'installed');
    t.match(
      await page.locator('#cert-info').textContent(),
      new RegExp(mgr.ctx.identity.info().leaf.fingerprint256),
    );
    if (shots) await page.screenshot({ path: join(shots, 'manager-certificates.png'), fullPage: true });

    // identify
    await page.getByRole('link', { name: 'Device' }).click();
    await page.getByLabel('Identify for (seconds)').fill('7');
    await page.getByRole('button', { name: 'Identify', exact: true }).click();
    await page.locator('#notice', { hasText: 'Identifying' }).waitFor();
    t.same(identifyCalls, ['true:7']);

    t.same(
      errors.filter((e) => !/status of (401|422)/.test(e)),
      [],
      'no page errors besides the refused paste',
    );
  },
);
