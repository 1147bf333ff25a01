import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createSystemClock, FakeClock } from '../../../firmware/clock/clock.js';
import type { GpioConfig } from '../../../firmware/config/board-types.js';
import { ControlRegistry } from '../../../firmware/control/registry.js';
import { FakeGpioBinding } from '../../../firmware/io/gpio-fake.js';
import { LibgpiodBinding } from '../../../firmware/io/gpio-libgpiod.js';
import { Debouncer, GpioService } from '../../../firmware/io/gpio-service.js';
import { listSysfsChips, SysfsGpioBinding, sysfsNumber } from '../../../firmware/io/gpio-sysfs.js';
import { SerialBridge } from '../../../firmware/io/serial-bridge.js';
import { FakeSerialBinding } from '../../../firmware/io/serial-fake.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { flush } from '../../helpers/flush.js';

const GPIO: GpioConfig = {
  binding: 'fake',
  identifyLed: { name: 'identify-led', chip: 'fake', line: 0, activeLow: false },
  identifyButton: { name: 'identify-button', chip: 'fake', line: 1, activeLow: true },
  contactInputs: [{ name: 'gpio-in-1', chip: 'fake', line: 2, activeLow: true }],
  contactOutputs: [
    { name: 'gpio-out-1', chip: 'fake', line: 4, activeLow: false },
    { name: 'gpio-out-2', chip: 'fake', line: 5, activeLow: true },
    { name: 'gpio-out-missing', chip: 'nochip', line: 5, activeLow: false },
  ],
};

t.test('GPIO service over the fake binding: identify, debounced inputs, outputs', async (t) => {
  const clock = new FakeClock(0);
  const registry = new ControlRegistry({ clock });
  const gpio = new FakeGpioBinding(['fake']);
  // Inputs idle high (active-low contacts open).
  gpio.setInput({ chip: 'fake', line: 1 }, true);
  gpio.setInput({ chip: 'fake', line: 2 }, true);
  const logger = createMemoryLogger();
  const buttons: boolean[] = [];
  const svc = new GpioService({
    config: GPIO,
    binding: gpio,
    registry,
    clock,
    logger,
    debounceMs: 20,
    onButton: (p) => buttons.push(p),
  });
  await svc.start();
  t.same(
    svc.failed,
    [{ name: 'gpio-out-missing', code: 'GPIO_ERR_NO_CHIP' }],
    'a missing chip is reported, the rest works',
  );
  t.notOk(registry.has('gpio-out-missing'));
  t.equal(registry.read('gpio-in-1').snapshot.Value, false, 'active-low input idle = false');
  t.equal(gpio.levels.get('fake:5'), true, 'active-low output starts inactive (high)');

  // Outputs: writable controls drive the line (active-low inverted).
  registry.setFromLink('gpio-out-1', true);
  registry.setFromLink('gpio-out-2', true);
  await flush();
  t.equal(gpio.levels.get('fake:4'), true);
  t.equal(gpio.levels.get('fake:5'), false);
  t.throws(() => registry.setFromLink('gpio-in-1', true), { code: 'CONTROL_ERR_READ_ONLY' });

  // Debounce: a 5 ms bounce is ignored, a held level is taken after 20 ms.
  const changes: Array<[string, unknown]> = [];
  registry.onChange((c) => changes.push([c.name, c.value]));
  const in1 = { chip: 'fake', line: 2 };
  gpio.setInput(in1, false);
  clock.advance(5);
  gpio.setInput(in1, true);
  clock.advance(50);
  t.same(changes, [], 'bounce ignored');
  gpio.setInput(in1, false);
  clock.advance(10);
  t.equal(registry.read('gpio-in-1').snapshot.Value, false, 'not yet');
  clock.advance(15);
  t.equal(registry.read('gpio-in-1').snapshot.Value, true, 'contact closed after the debounce time');

  // Identify: blinks the LED at 2 Hz until the time runs out.
  svc.identify(2);
  t.equal(registry.read('identify').snapshot.Value, true);
  const before = gpio.history.filter((h) => h.key === 'fake:0').length;
  clock.advance(2100);
  await flush();
  const ledWrites = gpio.history.filter((h) => h.key === 'fake:0').slice(before);
  t.ok(ledWrites.length >= 8 && ledWrites.length <= 10, `about 8 LED toggles in 2 s (${ledWrites.length})`);
  t.equal(gpio.levels.get('fake:0'), false, 'LED off at the end');
  t.equal(registry.read('identify').snapshot.Value, false);
  t.equal(clock.pendingCount, 0, 'no blink timer left');
  // The Core can start it through the `identify` control, and stop it.
  registry.setFromLink('identify', true);
  clock.advance(600);
  t.ok(svc.identifying);
  registry.setFromLink('identify', false);
  t.notOk(svc.identifying);

  // The identify button (active-low) is reported and toggles identify locally.
  gpio.setInput({ chip: 'fake', line: 1 }, false);
  clock.advance(30);
  t.same(buttons, [true]);
  t.equal(registry.read('identify-button').snapshot.Value, true);
  t.ok(svc.identifying, 'a press starts identify');
  gpio.setInput({ chip: 'fake', line: 1 }, true);
  clock.advance(30);
  t.same(buttons, [true, false]);

  await svc.stop();
  t.notOk(registry.has('gpio-in-1'), 'controls unregistered on stop');
  t.notOk(gpio.isOpen({ chip: 'fake', line: 4 }), 'lines closed on stop');
  const d = new Debouncer(false, 10, clock, () => t.fail('stopped debouncer fired'));
  d.input(true);
  d.stop();
  clock.advance(100);
});

function fakeSysfs(chips: Array<{ dir: string; label: string; base: number; ngpio: number }>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'qperiph-sysfs-'));
  for (const c of chips) {
    mkdirSync(path.join(root, c.dir));
    writeFileSync(path.join(root, c.dir, 'label'), `${c.label}\n`);
    writeFileSync(path.join(root, c.dir, 'base'), `${c.base}\n`);
    writeFileSync(path.join(root, c.dir, 'ngpio'), `${c.ngpio}\n`);
  }
  writeFileSync(path.join(root, 'export'), '');
  writeFileSync(path.join(root, 'unexport'), '');
  return root;
}

t.test('sysfs GPIO: base from chip labels (Pi >= 6.6: 512, Pi 5: 571) and a fake tree', async (t) => {
  const pi4 = [{ dir: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 }];
  const pi5 = [
    { dir: 'gpiochip512', label: 'gpio-brcmstb@107d508500', base: 512, ngpio: 32 },
    { dir: 'gpiochip571', label: 'pinctrl-rp1', base: 571, ngpio: 54 },
  ];
  const old = [{ dir: 'gpiochip0', label: 'pinctrl-bcm2835', base: 0, ngpio: 54 }];
  t.equal(sysfsNumber(pi4, { chip: 'pinctrl-bcm2711', line: 17 }), 529);
  t.equal(sysfsNumber(pi5, { chip: 'pinctrl-rp1', line: 17 }), 588);
  t.equal(sysfsNumber(old, { chip: 'pinctrl-bcm2835', line: 17 }), 17);
  t.equal(sysfsNumber(pi5, { chip: 'gpiochip571', line: 4 }), 575, 'by directory name too');
  t.throws(() => sysfsNumber(pi4, { chip: 'pinctrl-rp1', line: 1 }), { code: 'GPIO_ERR_NO_CHIP' });
  t.throws(() => sysfsNumber(pi4, { chip: 'pinctrl-bcm2711', line: 58 }), { code: 'GPIO_ERR_NO_LINE' });

  const root = fakeSysfs(pi5);
  t.same(
    (await listSysfsChips(root)).map((c) => [c.label, c.base]),
    [
      ['gpio-brcmstb@107d508500', 512],
      ['pinctrl-rp1', 571],
    ],
  );
  // The kernel would create gpioN/ on export; the fake tree has them ready.
  for (const n of [588, 589]) {
    mkdirSync(path.join(root, `gpio${n}`));
    writeFileSync(path.join(root, `gpio${n}`, 'value'), '0\n');
    writeFileSync(path.join(root, `gpio${n}`, 'direction'), 'in\n');
  }
  const binding = new SysfsGpioBinding({ clock: createSystemClock(), root, pollMs: 5 });
  const out = await binding.open({ chip: 'pinctrl-rp1', line: 17 }, 'output', true);
  t.equal(
    readFileSync(path.join(root, 'gpio588', 'direction'), 'utf8'),
    'high',
    'direction+level in one write',
  );
  await out.write(false);
  t.equal(readFileSync(path.join(root, 'gpio588', 'value'), 'utf8'), '0');
  await t.rejects(binding.open({ chip: 'pinctrl-rp1', line: 17 }, 'input'), { code: 'GPIO_ERR_BUSY' });
  const inp = await binding.open({ chip: 'pinctrl-rp1', line: 18 }, 'input');
  t.equal(readFileSync(path.join(root, 'gpio589', 'direction'), 'utf8'), 'in');
  await t.rejects(inp.write(true), { code: 'GPIO_ERR_DIRECTION' });
  const seen: boolean[] = [];
  inp.watch((l) => seen.push(l));
  await new Promise((r) => setTimeout(r, 30));
  writeFileSync(path.join(root, 'gpio589', 'value'), '1\n');
  for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(seen, [true], 'a level change on the value file is seen');
  t.equal(await inp.read(), true);
  await inp.close();
  await out.close();
  t.equal(readFileSync(path.join(root, 'unexport'), 'utf8'), '588', 'unexported on close');
  await t.rejects(out.write(true), { code: 'GPIO_ERR_CLOSED' });
  // Export of a line whose directory never appears fails cleanly.
  const slow = new SysfsGpioBinding({ clock: createSystemClock(), root, exportWaitMs: 50 });
  await t.rejects(slow.open({ chip: 'pinctrl-rp1', line: 20 }, 'input'), { code: 'GPIO_ERR_IO' });
  t.equal(readFileSync(path.join(root, 'export'), 'utf8'), '591');
  await t.rejects(
    new SysfsGpioBinding({ clock: createSystemClock(), root: path.join(root, 'none') }).open(
      { chip: 'x', line: 0 },
      'input',
    ),
    {
      code: 'GPIO_ERR_NO_CHIP',
    },
  );
});

t.test('libgpiod tools binding against stub gpioget/gpioset/gpiomon scripts', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qperiph-gpiod-'));
  const stateFile = path.join(dir, 'calls.log');
  const script = (name: string, body: string): void => {
    writeFileSync(path.join(dir, name), `#!/bin/sh\necho "${name} $*" >> ${stateFile}\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  };
  script('gpioget', '[ "$1" = "nochip" ] && { echo "gpioget: unable to find chip" >&2; exit 1; }\necho 1');
  script('gpioset', 'trap "exit 0" TERM\nwhile :; do sleep 0.05; done');
  script(
    'gpiomon',
    'sleep 0.1; echo 1; sleep 0.05; echo 0; trap "exit 0" TERM\nwhile :; do sleep 0.05; done',
  );
  const b = new LibgpiodBinding({ logger: createMemoryLogger(), toolDir: dir });
  const inp = await b.open({ chip: 'gpiochip0', line: 5 }, 'input');
  t.equal(await inp.read(), true);
  const edges: boolean[] = [];
  inp.watch((l) => edges.push(l));
  for (let i = 0; i < 300 && edges.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(edges, [true, false], 'gpiomon edges parsed');
  const out = await b.open({ chip: 'gpiochip0', line: 6 }, 'output', true);
  await out.write(false);
  t.equal(await out.read(), false);
  await t.rejects(b.open({ chip: 'nochip', line: 1 }, 'input'), { code: 'GPIO_ERR_NO_CHIP' });
  await inp.close();
  await out.close();
  for (let i = 0; i < 100 && !existsSync(stateFile); i++) await new Promise((r) => setTimeout(r, 10));
  const calls = readFileSync(stateFile, 'utf8');
  t.match(calls, /gpioset --mode=signal gpiochip0 6=1/);
  t.match(calls, /gpioset --mode=signal gpiochip0 6=0/);
  t.match(calls, /gpiomon --format=%e gpiochip0 5/);
});

t.test('serial bridge over the fake binding', async (t) => {
  const binding = new FakeSerialBinding(['/dev/ttyFAKE0']);
  const bridge = new SerialBridge({
    ports: [{ name: 'rs232', path: '/dev/ttyFAKE0', defaultBaudRate: 9600 }],
    binding,
    logger: createMemoryLogger(),
  });
  const events: string[] = [];
  bridge.onEvent((e) => events.push(e.kind === 'data' ? `data:${e.data.toString()}` : `${e.kind}:${e.name}`));
  t.match(bridge.list(), [
    { name: 'rs232', open: false, baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1 },
  ]);
  await t.rejects(bridge.write('rs232', Buffer.from('x')), { code: 'SERIAL_ERR_NOT_OPEN' });
  await t.rejects(bridge.open('rs232', { baudRate: 12345 }), { code: 'SERIAL_ERR_BAD_SETTINGS' });
  await t.rejects(bridge.open('rs232', { stopBits: 1.5 }), { code: 'SERIAL_ERR_BAD_SETTINGS' });
  await t.rejects(bridge.open('other'), { code: 'SERIAL_ERR_UNKNOWN_PORT' });
  await bridge.open('RS232', { baudRate: 19200 });
  const dev = binding.device('/dev/ttyFAKE0');
  t.match(dev.settings, { baudRate: 19200, dataBits: 8 });
  await bridge.write('rs232', Buffer.from('a'));
  await bridge.write('rs232', Buffer.from('b'));
  t.equal(dev.writtenBytes.toString(), 'ab');
  dev.send('reply');
  await bridge.configure('rs232', { baudRate: 38400 });
  t.equal(dev.reopens, 0, 'baud alone changes in place');
  await bridge.configure('rs232', { dataBits: 7, parity: 'odd' });
  t.equal(dev.reopens, 1);
  dev.lineError('parity error');
  dev.unplug();
  t.same(events, ['data:reply', 'error:rs232', 'closed:rs232']);
  t.equal(bridge.list()[0]!.open, false, 'unplugged port is closed');
  t.equal(bridge.counters.bytesIn, 5);
  t.equal(bridge.counters.bytesOut, 2);
  await bridge.open('rs232');
  t.match(
    bridge.list()[0],
    { open: true, baudRate: 38400, dataBits: 7, parity: 'odd' },
    'settings kept across reopen',
  );
  await bridge.closeAll();
  t.equal(dev.isOpen, false);
});
