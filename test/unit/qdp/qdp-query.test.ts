import t from 'tap';
import {
  controlRef,
  deviceRef,
  globMatch,
  isValidQdpName,
  queryMatches,
} from '../../../firmware/qdp/qdp-query.js';

t.test('ref helpers', async (t) => {
  t.equal(deviceRef('ioframe', 'nv32-7a3f'), 'device.ioframe.nv32-7a3f');
  t.equal(controlRef('Xq7LmN2pR4sT', 'nv32-7a3f'), 'control.Xq7LmN2pR4sT.nv32-7a3f');
});

t.test('query_ref patterns', async (t) => {
  const unassigned = { name: 'nv32-7a3f', type: 'ioframe' };
  const assigned = { name: 'nv32-7a3f', type: 'ioframe', designCode: 'Xq7LmN2pR4sT', role: 'Lobby-Decoder' };
  const nullDesign = { name: 'nv32-7a3f', type: 'ioframe', designCode: null, role: null };
  const roleless = { name: 'nv32-7a3f', type: 'ioframe', designCode: 'Xq7LmN2pR4sT', role: null };
  type Self = typeof unassigned | typeof assigned | typeof nullDesign | typeof roleless;
  const table: Array<[pattern: string, self: Self, expected: boolean]> = [
    // device refs
    ['device.ioframe.nv32-7a3f', unassigned, true],
    ['device.ioframe.*', unassigned, true],
    ['device.ioframe*', unassigned, true],
    ['device.*', unassigned, true],
    ['device.*.*', unassigned, true],
    ['*', unassigned, true],
    ['*.nv32-7a3f', unassigned, true],
    ['device.*.nv32-*', unassigned, true],
    ['device.io*3f', unassigned, true],
    ['device.ioframe.nv32-7a3f*', unassigned, true],
    ['device.ioframe.NV32-7A3F', unassigned, false],
    ['Device.ioframe.*', unassigned, false],
    ['device.ioframe.nv32-7a3', unassigned, false],
    ['device.ioframe.nv32-7a3f.', unassigned, false],
    ['device.ioframe', unassigned, false],
    ['device.core*', unassigned, false],
    ['device.core.*', unassigned, false],
    ['device.ioframe.?v32-7a3f', unassigned, false],
    ['device?ioframe?nv32-7a3f', unassigned, false],
    ['device.ioframe.[n]v32-7a3f', unassigned, false],
    ['device\\.ioframe\\.nv32-7a3f', unassigned, false],
    ['device.ioframe.nv32.7a3f', unassigned, false],
    ['', unassigned, false],
    [' device.ioframe.*', unassigned, false],
    // control refs, only with a design
    ['control.Xq7LmN2pR4sT.*', assigned, true],
    ['control.*.*', assigned, true],
    ['control.Xq7LmN2pR4sT.Lobby-Decoder', assigned, true],
    ['control.*', assigned, true],
    ['control.Xq7LmN2pR4sT.lobby-decoder', assigned, false],
    ['control.xq7lmn2pr4st.*', assigned, false],
    ['control.OtherDesign1.*', assigned, false],
    ['control.Xq7LmN2pR4sT.Lobby-Decoder.primary', assigned, false],
    ['device.ioframe.*', assigned, true],
    ['control.*.*', unassigned, false],
    ['control.*.*', nullDesign, false],
    ['*', nullDesign, true],
    ['control.Xq7LmN2pR4sT.nv32-7a3f', roleless, true],
    ['control.Xq7LmN2pR4sT.*', roleless, true],
  ];
  for (const [pattern, self, expected] of table) {
    t.equal(queryMatches(pattern, self), expected, `${JSON.stringify(pattern)} vs ${JSON.stringify(self)}`);
  }
});

t.test('glob edge cases', async (t) => {
  t.ok(globMatch('**', ''), 'stars match the empty string');
  t.ok(globMatch('a*b*c', 'a.b.c'));
  t.ok(globMatch('a*b*c', 'abc'));
  t.notOk(globMatch('a*b*c', 'acb'));
  t.ok(globMatch('*a', 'aaaa'));
  t.notOk(globMatch('a', ''));
  // A pattern that makes naive recursive globbing exponential finishes at once.
  const started = Date.now();
  t.notOk(globMatch('*a'.repeat(30) + 'b', 'a'.repeat(256)));
  t.ok(Date.now() - started < 200, 'hostile pattern is cheap');
});

t.test('isValidQdpName', async (t) => {
  const good = [
    'a',
    'Z',
    '0',
    'nv32-7a3f',
    'core-110f-dddd',
    'TSC-80-G2-4F1C',
    'x'.repeat(63),
    'a-b-c',
    '1-2',
  ];
  const bad = ['', '-a', 'a-', '-', 'x'.repeat(64), 'a_b', 'a.b', 'a b', 'é', 'a\n', 'nv32/7a3f', 'a--'];
  for (const name of good) t.ok(isValidQdpName(name), `valid: ${JSON.stringify(name)}`);
  for (const name of bad) t.notOk(isValidQdpName(name), `invalid: ${JSON.stringify(name)}`);
});
