import t, { type Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BoardConfigError,
  ConfigJsonError,
  ConfigReadError,
  deepFreeze,
  findProjectRoot,
  loadBoardConfig,
  parseBoardConfig,
  parseJsonText,
  type ConfigIssue,
} from '../../../firmware/config/board-config.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const boardDir = join(root, 'board-configs');
const boardFiles = readdirSync(boardDir)
  .filter((f) => f.endsWith('.json') && f !== 'board.schema.json')
  .sort();

const virtualJson = (): any => JSON.parse(readFileSync(join(boardDir, 'virtual.json'), 'utf8'));
const rpi4Json = (): any =>
  JSON.parse(readFileSync(join(boardDir, 'rpi4-hifiberry-dacplusadc.json'), 'utf8'));

/** The issues parseBoardConfig reports for `input` (fails the test if it does not throw). */
function issuesOf(t: Test, input: unknown): ConfigIssue[] {
  try {
    parseBoardConfig(input, 'test');
  } catch (err) {
    t.type(err, BoardConfigError);
    t.equal((err as BoardConfigError).code, 'CONFIG_ERR_INVALID');
    return [...(err as BoardConfigError).issues];
  }
  t.fail('expected a BoardConfigError');
  return [];
}

t.test('every shipped board file validates', async (t) => {
  t.same(boardFiles, [
    'beaglebone-black.json',
    'cm4.json',
    'rpi4-hifiberry-dacplusadc.json',
    'rpi5-hifiberry-dacplusadc.json',
    'virtual.json',
  ]);
  for (const f of boardFiles) {
    const cfg = loadBoardConfig(join(boardDir, f));
    t.equal(cfg.id, basename(f, '.json'), `${f}: id matches the file name`);
    t.equal(cfg.schemaVersion, 1);
    t.ok(cfg.gpio.identifyLed && cfg.gpio.identifyButton, `${f}: identify LED and button`);
    t.ok(cfg.gpio.contactInputs.length >= 1 && cfg.gpio.contactOutputs.length >= 1, `${f}: contact I/O`);
    t.ok(cfg.serial.length >= 1, `${f}: a serial port`);
    t.equal(cfg.ptp.priority1, 255, `${f}: a peripheral never wins BMCA on priority1`);
    t.equal(cfg.ptp.domain, 0, `${f}: AES67 domain`);
    t.equal(cfg.isVirtual, f === 'virtual.json');
  }
  const v = loadBoardConfig(join(boardDir, 'virtual.json'));
  t.same(v.network, { lanA: { interface: 'lo', address: '127.0.0.1' }, lanB: null });
  t.equal(v.audio.binding, 'virtual');
  t.equal(v.audio.capture?.channels, 2);
  t.equal(v.audio.playback?.device, 'virtual');
  t.equal(v.gpio.binding, 'fake');
  t.same(v.serial, [{ name: 'serial1', path: 'virtual:serial1', defaultBaudRate: 9600 }]);
  t.equal(v.boot.selector, 'directory');

  const pi4 = loadBoardConfig(join(boardDir, 'rpi4-hifiberry-dacplusadc.json'));
  t.equal(pi4.ptp.timestamping, 'software', 'Pi 4 has no PHC');
  const hifiberryPins = new Set([2, 3, 18, 19, 20, 21]);
  const lines = [
    pi4.gpio.identifyLed!,
    pi4.gpio.identifyButton!,
    ...pi4.gpio.contactInputs,
    ...pi4.gpio.contactOutputs,
  ];
  t.notOk(
    lines.some((l) => hifiberryPins.has(l.line)),
    'no GPIO line the HiFiBerry uses',
  );
  t.equal(
    loadBoardConfig(join(boardDir, 'rpi5-hifiberry-dacplusadc.json')).gpio.identifyLed?.chip,
    'pinctrl-rp1',
  );
  t.equal(loadBoardConfig(join(boardDir, 'beaglebone-black.json')).boot.selector, 'uboot-env');
});

t.test('loadBoardConfig applies a LAN A address override and validates it', async (t) => {
  const file = join(boardDir, 'virtual.json');
  t.equal(loadBoardConfig(file, { lanAAddress: '127.0.0.7' }).network.lanA.address, '127.0.0.7');
  t.throws(() => loadBoardConfig(file, { lanAAddress: '127.0.0.300' }), {
    code: 'CONFIG_ERR_INVALID',
    issues: [{ path: '/network/lanA/address' }],
  });
});

t.test('each kind of schema error is reported with its JSON Pointer', async (t) => {
  const cases: Array<[string, (c: any) => void, ConfigIssue]> = [
    [
      'range',
      (c) => (c.gpio.contactInputs[1].line = 1024),
      { path: '/gpio/contactInputs/1/line', message: 'must be <= 1023' },
    ],
    [
      'minimum',
      (c) => (c.audio.capture.channels = 0),
      { path: '/audio/capture/channels', message: 'must be >= 1' },
    ],
    ['maximum', (c) => (c.ptp.domain = 256), { path: '/ptp/domain', message: 'must be <= 255' }],
    ['required', (c) => delete c.ptp.priority2, { path: '/ptp/priority2', message: 'is required' }],
    [
      'unknown property',
      (c) => (c.network.lanA.mtu = 9000),
      { path: '/network/lanA/mtu', message: 'is not an allowed property' },
    ],
    [
      'enum',
      (c) => (c.boot.selector = 'grub'),
      { path: '/boot/selector', message: 'must be one of "rpi-tryboot", "uboot-env", "directory"' },
    ],
    ['type', (c) => (c.isVirtual = 'yes'), { path: '/isVirtual', message: 'must be boolean' }],
    [
      'nullable type',
      (c) => (c.network.lanB = 'eth1'),
      { path: '/network/lanB', message: 'must be object or null' },
    ],
    ['integer', (c) => (c.ptp.priority1 = 1.5), { path: '/ptp/priority1', message: 'must be integer' }],
    [
      'const',
      (c) => (c.audio.playback.sampleRate = 44100),
      { path: '/audio/playback/sampleRate', message: 'must be 48000' },
    ],
    [
      'id pattern',
      (c) => (c.id = 'Virtual_1'),
      { path: '/id', message: 'must match pattern "^[a-z0-9][a-z0-9-]*$"' },
    ],
    [
      'baud rate',
      (c) => (c.serial[0].defaultBaudRate = 9601),
      {
        path: '/serial/0/defaultBaudRate',
        message:
          'must be one of 300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600',
      },
    ],
  ];
  for (const [label, mutate, expected] of cases) {
    const c = virtualJson();
    mutate(c);
    t.same(issuesOf(t, c), [expected], label);
  }
  const addr = virtualJson();
  addr.network.lanA.address = '127.0.0.256';
  const [issue] = issuesOf(t, addr);
  t.equal(issue?.path, '/network/lanA/address', 'IPv4 pattern');
  t.match(issue?.message, /^must match pattern/);

  t.same(issuesOf(t, null), [{ path: '', message: 'must be object' }], 'not an object');
  t.same(issuesOf(t, [virtualJson()]), [{ path: '', message: 'must be object' }], 'an array');
  t.same(issuesOf(t, { ...virtualJson(), f: () => 1 }), [{ path: '', message: 'must be plain JSON data' }]);
});

t.test('cross-field rules are reported with their JSON Pointer', async (t) => {
  const cases: Array<[string, () => any, ConfigIssue[]]> = [
    [
      'GPIO line used twice on one chip',
      () => {
        const c = rpi4Json();
        c.gpio.contactOutputs[1].line = c.gpio.identifyLed.line;
        return c;
      },
      [
        {
          path: '/gpio/contactOutputs/1/line',
          message: "line 17 on chip 'gpiochip0' is already used by /gpio/identifyLed",
        },
      ],
    ],
    [
      'same line on another chip is fine, names still unique',
      () => {
        const c = rpi4Json();
        c.gpio.contactOutputs[1] = { ...c.gpio.identifyLed, chip: 'gpiochip1', name: 'GPIO-IN-1' };
        return c;
      },
      [
        {
          path: '/gpio/contactOutputs/1/name',
          message: "name 'GPIO-IN-1' is already used by /gpio/contactInputs/0/name",
        },
      ],
    ],
    [
      'control name shared by a GPIO line and a serial port',
      () => {
        const c = rpi4Json();
        c.serial[0].name = 'identify-led';
        return c;
      },
      [{ path: '/serial/0/name', message: "name 'identify-led' is already used by /gpio/identifyLed/name" }],
    ],
    [
      'two serial ports on one device',
      () => {
        const c = rpi4Json();
        c.serial.push({ name: 'serial2', path: '/dev/serial0', defaultBaudRate: 115200 });
        return c;
      },
      [{ path: '/serial/1/path', message: "'/dev/serial0' is already used by /serial/0" }],
    ],
    [
      'lanB on the same interface as lanA',
      () => {
        const c = rpi4Json();
        c.network.lanB = { interface: 'eth0' };
        return c;
      },
      [{ path: '/network/lanB/interface', message: "must differ from /network/lanA/interface ('eth0')" }],
    ],
    [
      'virtual audio and fake GPIO on real hardware',
      () => ({ ...virtualJson(), isVirtual: false }),
      [
        { path: '/serial/0/path', message: "'virtual:' paths are only allowed when /isVirtual is true" },
        { path: '/audio/binding', message: "'virtual' is only allowed when /isVirtual is true" },
        { path: '/gpio/binding', message: "'fake' is only allowed when /isVirtual is true" },
      ],
    ],
    [
      'device of the wrong binding',
      () => {
        const c = rpi4Json();
        c.audio.capture.device = 'virtual';
        const v = virtualJson();
        v.audio.playback.device = 'hw:0,0';
        return [c, v];
      },
      [
        { path: '/audio/capture/device', message: "must be an ALSA PCM name when /audio/binding is 'alsa'" },
        { path: '/audio/playback/device', message: "must be 'virtual' when /audio/binding is 'virtual'" },
      ],
    ],
    [
      'buffer shorter than two periods',
      () => {
        const c = rpi4Json();
        c.audio.playback.bufferTimeUs = 1500;
        return c;
      },
      [{ path: '/audio/playback/bufferTimeUs', message: 'must be at least two periods (>= 2000)' }],
    ],
  ];
  for (const [label, make, expected] of cases) {
    const input = make();
    const inputs = Array.isArray(input) ? input : [input];
    t.same(
      inputs.flatMap((i) => issuesOf(t, i)),
      expected,
      label,
    );
  }
  const ok = rpi4Json();
  ok.audio.capture = null;
  ok.network.lanB = { interface: 'eth1', address: '192.168.2.10' };
  t.equal(parseBoardConfig(ok).network.lanB?.interface, 'eth1', 'null capture and a distinct lanB are fine');
});

t.test('several problems at once are all reported, in one error', async (t) => {
  const c = rpi4Json();
  c.gpio.contactInputs[1].line = 5000;
  delete c.model;
  c.ptp.timestamping = 'gps';
  c.gpio.contactOutputs[0].line = 5;
  c.network.lanB = { interface: 'eth0', speed: 1000 };
  let err: BoardConfigError | undefined;
  try {
    parseBoardConfig(c, 'board-configs/broken.json');
  } catch (e) {
    err = e as BoardConfigError;
  }
  t.ok(err, 'threw');
  const paths = err!.issues.map((i) => i.path).sort();
  t.same(paths, [
    '/gpio/contactInputs/1/line',
    '/gpio/contactOutputs/0/line',
    '/model',
    '/network/lanB/interface',
    '/network/lanB/speed',
    '/ptp/timestamping',
  ]);
  t.match(err!.message, /^Invalid board config \(board-configs\/broken\.json\): 6 problems\n/);
  for (const i of err!.issues)
    t.ok(err!.message.includes(`  ${i.path}: ${i.message}`), `message lists ${i.path}`);
  t.ok(Object.isFrozen(err!.issues));
});

t.test('the result is a deep-frozen copy', async (t) => {
  const input = virtualJson();
  const cfg = parseBoardConfig(input);
  t.not(cfg, input);
  t.ok(
    Object.isFrozen(cfg) &&
      Object.isFrozen(cfg.gpio.contactInputs) &&
      Object.isFrozen(cfg.gpio.contactInputs[0]),
  );
  t.throws(() => {
    (cfg as any).id = 'other';
  }, TypeError);
  t.throws(() => {
    (cfg.gpio.contactInputs[0] as any).line = 9;
  }, TypeError);
  t.throws(() => {
    (cfg.serial as any).push({});
  }, TypeError);
  input.gpio.contactInputs[0].line = 9;
  t.equal(cfg.gpio.contactInputs[0]?.line, 2, 'later changes to the input do not leak in');

  const o = deepFreeze({ a: { b: [1, { c: 2 }] } });
  t.ok(Object.isFrozen(o.a.b[1]));
  t.equal(deepFreeze(null), null);
});

t.test('file errors: missing file, bad JSON with line and column', async (t) => {
  const dir = t.testdir({
    'trailing-comma.json': '{\n  "id": "x",\n  "model": "y",\n}\n',
    'bad-literal.json': '{\n  "isVirtual": tru,\n  "x": 1\n}',
    'truncated.json': '{\n  "id": "x",\n  "network": {\n',
    'bom.json': '\ufeff{"a": 1}}',
    'empty.json': '',
  });
  t.throws(() => loadBoardConfig(join(dir, 'nope.json')), {
    code: 'CONFIG_ERR_READ',
    file: join(dir, 'nope.json'),
    message: /ENOENT/,
  });
  t.type(
    (() => {
      try {
        loadBoardConfig(dir);
      } catch (e) {
        return e;
      }
    })(),
    ConfigReadError,
    'a directory is a read error too',
  );

  const jsonErr = (name: string): ConfigJsonError => {
    try {
      loadBoardConfig(join(dir, name));
    } catch (e) {
      if (e instanceof ConfigJsonError) return e;
      throw e;
    }
    throw new Error('no error');
  };
  let e = jsonErr('trailing-comma.json');
  t.equal(e.code, 'CONFIG_ERR_JSON');
  t.match(e, { line: 4, column: 1, offset: 31 });
  t.match(e.message, /at line 4, column 1: expected a property name in double quotes, found "}"/);
  e = jsonErr('bad-literal.json');
  t.match(e, { line: 2, column: 19 }, 'points at the bad character, where V8 gives no position');
  t.match(e.message, /invalid literal \(expected true\)/);
  e = jsonErr('truncated.json');
  t.match(e, { line: 4, column: 1 });
  t.match(e.message, /unexpected end of input/);
  e = jsonErr('bom.json');
  t.match(e, { line: 1, column: 10 }, 'BOM counted in the column');
  t.match(e.message, /unexpected content after the JSON value/);
  e = jsonErr('empty.json');
  t.match(e, { line: 1, column: 1 });

  t.same(parseJsonText('\ufeff[1, "\\u00e9", -0.5e3, true, null, {}]', 'x'), [1, 'é', -500, true, null, {}]);
  t.throws(() => parseJsonText('{"a": 01}', 'x'), { line: 1, column: 8, message: /invalid number/ });
  t.throws(() => parseJsonText('{"a": "\\x"}', 'x'), { column: 8, message: /invalid escape/ });
  t.throws(() => parseJsonText('["a\tb"]', 'x'), { column: 4, message: /control character/ });
});

t.test('findProjectRoot: QPERIPH_ROOT, else walk up from the module', async (t) => {
  t.equal(findProjectRoot({}), root.replace(/\/$/, ''));
  const dir = t.testdir({ 'board-configs': { 'board.schema.json': '{}' }, deep: { er: { 'x.js': '' } } });
  t.equal(findProjectRoot({ QPERIPH_ROOT: dir }), dir);
  t.equal(
    findProjectRoot({}, new URL(`file://${dir}/deep/er/x.js`).href),
    dir,
    'as from dist/firmware/config',
  );
  t.throws(() => findProjectRoot({ QPERIPH_ROOT: join(dir, 'deep') }), { code: 'CONFIG_ERR_SCHEMA' });
  t.throws(() => findProjectRoot({}, 'file:///x.js'), { code: 'CONFIG_ERR_SCHEMA' });
});
