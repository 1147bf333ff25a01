import t from 'tap';
import { planForeignArch, type ForeignArchFacts } from '../../../scripts/image/foreign-arch.js';

const base: ForeignArchFacts = {
  hostArch: 'amd64',
  arch: 'arm64',
  runs: false,
  binfmtMounted: true,
  entry: 'disabled',
  root: true,
  tools: { mmdebstrap: true, archTest: true, updateBinfmts: true, qemuUser: true },
};
const f = (o: Partial<ForeignArchFacts>): ForeignArchFacts => ({ ...base, ...o });

t.test('already runs: nothing to do', async (t) => {
  t.same(planForeignArch(f({ runs: true })), { kind: 'ready', steps: [] });
});

t.test('a disabled entry is enabled', async (t) => {
  t.same(planForeignArch(f({})), { kind: 'setup', steps: [{ kind: 'enable', entry: 'qemu-aarch64' }] });
});

t.test('binfmt_misc not mounted: mount, then import the entry', async (t) => {
  t.same(planForeignArch(f({ binfmtMounted: false, entry: 'absent' })), {
    kind: 'setup',
    steps: [{ kind: 'mount-binfmt' }, { kind: 'import', entry: 'qemu-aarch64' }],
  });
});

t.test('armhf uses qemu-arm', async (t) => {
  t.same(planForeignArch(f({ arch: 'armhf', entry: 'absent' })), {
    kind: 'setup',
    steps: [{ kind: 'import', entry: 'qemu-arm' }],
  });
});

t.test('impossible cases name what is missing', async (t) => {
  const r1 = planForeignArch(f({ tools: { ...base.tools, mmdebstrap: false, archTest: false } }));
  t.equal(r1.kind, 'impossible');
  t.match(r1.kind === 'impossible' ? r1.reason : '', /apt-get install mmdebstrap arch-test/);
  const r2 = planForeignArch(f({ tools: { ...base.tools, qemuUser: false } }));
  t.match(r2.kind === 'impossible' ? r2.reason : '', /qemu-user-static binfmt-support/);
  const r3 = planForeignArch(f({ root: false }));
  t.match(r3.kind === 'impossible' ? r3.reason : '', /needs root .*--base/);
  // missing tools matter even when the CPU runs natively (mmdebstrap is needed anyway)
  t.equal(planForeignArch(f({ runs: true, tools: { ...base.tools, mmdebstrap: false } })).kind, 'impossible');
  // not root but it already works: fine
  t.equal(planForeignArch(f({ runs: true, root: false })).kind, 'ready');
});
