// Who may run check and explain: check only reads, so a member of the
// group owning the state may run it; explain runs the loaded program,
// which only root may open, and says so.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { installed } from './lib/installed.js';
import { isolate } from './lib/isolate.js';
import { addGroup, asNobody } from './lib/nobody.js';
import { ok, tubectlFor } from './lib/tubectl.js';

const { bpffs } = isolate();
const asOther = installed(); // nobody may not be able to read the checkout
const tubectl = tubectlFor(bpffs);
const group = `tubc${process.pid}`;
let gid: number;

const tubectlAsNobody = (withGroup: boolean) => tubectlFor(bpffs, {
  prefix: asNobody(withGroup ? gid : undefined),
  tubectl: asOther.tubectl,
});

before(async () => {
  gid = addGroup(group);
  chmodSync(bpffs, 0o755);
  ok(await tubectl(['load', '--group', group]));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
});
after(async () => {
  await tubectl(['unload']);
  execFileSync('groupdel', [group]);
});

test('a group member runs check, and gets what root gets', async () => {
  const root = await tubectl(['check', '--json']);
  const member = await tubectlAsNobody(true)(['check', '--json']);
  assert.deepEqual([member.code, member.stdout, member.stderr], [1, root.stdout, '']);
  assert.match(member.stdout, /"kind": "blackhole"/);
});

test('explain needs root, and says so; outside the group, reading is refused first', async () => {
  const member = await tubectlAsNobody(true)(['explain', 'tcp', '127.0.0.1', '80']);
  assert.deepEqual([member.code, member.stdout], [1, '']);
  assert.equal(member.stderr, 'tubectl: explain asks the loaded program the same question (BPF_PROG_TEST_RUN), and only root may open it: run tubectl explain as root\n');
  const other = await tubectlAsNobody(false)(['explain', 'tcp', '127.0.0.1', '80']);
  assert.equal(other.code, 1);
  assert.match(other.stderr, new RegExp(`^tubectl: reading the dispatcher needs root or membership of group ${group} `));
});
