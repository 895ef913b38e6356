// Read-only access: a non-root member of the group owning the state can run
// status, bindings, list and metrics; writing needs root; others are refused.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { installed } from './lib/installed.js';
import { isolate } from './lib/isolate.js';
import { addGroup, asNobody } from './lib/nobody.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { netnsInode } from '../src/netns.js';
import { unprivilegedBpfDisabled } from '../src/kernel.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const asOther = installed(); // nobody may not be able to read the checkout
const group = `tubt${process.pid}`;
let gid: number;
const emptyFile = path.join(tmpdir(), `tubectl-empty-${process.pid}.json`);

/** tubectl as nobody, with or without the group. */
const tubectlAsNobody = (withGroup: boolean) => tubectlFor(bpffs, {
  prefix: asNobody(withGroup ? gid : undefined),
  tubectl: asOther.tubectl,
});

before(async () => {
  gid = addGroup(group);
  chmodSync(bpffs, 0o755); // the private mount must be traversable
  writeFileSync(emptyFile, '{"bindings": []}');
  chmodSync(emptyFile, 0o644); // nobody reads it, whatever the umask
  const load = ok(await tubectl(['load', '--group', group]));
  assert.match(load.stdout, new RegExp(`readable by group ${group} \\(gid ${gid}\\)`));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
  ok(await tubectl(['bind', '--reject', 'tcp', '127.0.0.0/28', '25']));
});

after(async () => {
  await tubectl(['unload']);
  execFileSync('groupdel', [group]);
  rmSync(emptyFile, { force: true });
});

test('the state belongs to the group and is not world-readable', () => {
  const st = statSync(path.join(bpffs, `${netnsInode('/proc/self/ns/net')}_dispatcher`));
  assert.equal(st.gid, gid);
  assert.equal(st.mode & 0o777, 0o750);
});

/**
 * Whether this kernel may refuse every bpf() call from users without
 * CAP_BPF: before Linux 6.5, while kernel.unprivileged_bpf_disabled is set
 * (Debian's kernels set it to 2; Debian's 6.1 has the 6.5 change, its 5.10
 * does not). The kernel matrix runs this test on such kernels.
 */
function kernelMayRefuseReaders(): boolean {
  const [major, minor] = release().split('.').map(Number);
  return (major < 6 || (major === 6 && minor < 5)) && (unprivilegedBpfDisabled() ?? 0) !== 0;
}

const SYSCTL = '/proc/sys/kernel/unprivileged_bpf_disabled';

test('a group member reads status, bindings and list without root (before Linux 6.5: or is told why, and reads once the sysctl allows it)', async (t) => {
  const member = tubectlAsNobody(true);
  const first = await member(['status']);
  if (!kernelMayRefuseReaders() || first.code === 0) {
    ok(first);
    await groupReads(member);
    return;
  }
  const was = unprivilegedBpfDisabled();
  t.diagnostic(`this kernel refuses the group's reads while kernel.unprivileged_bpf_disabled is ${was}`);
  for (const r of [first, await member(['bindings'])]) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^tubectl: this kernel \\(${release().replace(/[.+]/g, '\\$&')}\\) refuses every bpf\\(\\) call from users without CAP_BPF ` +
      `while kernel\\.unprivileged_bpf_disabled is ${was}, so the group owning the state cannot read it; Linux 6\\.5 and newer allow it: run this command as root, `));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  // 2 (Debian's default) can be set to 0 by root until the next boot; 1
  // cannot. Only in a guest of the kernel matrix, thrown away after the
  // run: a machine of its own keeps its setting.
  if (was !== 2 || process.env.TUBULAR_TEST_GUEST !== '1') {
    t.diagnostic('the reads with the sysctl at 0 are left to the kernel matrix');
    return;
  }
  writeFileSync(SYSCTL, '0');
  try {
    await groupReads(member);
  } finally {
    writeFileSync(SYSCTL, '2');
  }
});

/** What a member of the group reads, the same as root does. */
async function groupReads(member: ReturnType<typeof tubectlAsNobody>): Promise<void> {
  const status = ok(await member(['status', '--json']));
  const s = JSON.parse(status.stdout) as { loaded: boolean; bindings: number };
  assert.equal(s.loaded, true);
  assert.equal(s.bindings, 2);
  assert.match(ok(await member(['status'])).stdout, /bindings: 2\n/);
  const b = JSON.parse(ok(await member(['bindings', '--json'])).stdout) as { bindings: { label: string }[] };
  assert.deepEqual(b.bindings.map((x) => x.label), ['', 'web']);
  const root = ok(await tubectl(['bindings', '--json'])).stdout;
  assert.equal(ok(await member(['bindings', '--json'])).stdout, root);
  assert.deepEqual(JSON.parse(ok(await member(['list', '--json'])).stdout), JSON.parse(ok(await tubectl(['list', '--json'])).stdout));
  assert.deepEqual(JSON.parse(ok(await member(['sources', '--json'])).stdout), JSON.parse(ok(await tubectl(['sources', '--json'])).stdout));
  assert.match(ok(await member(['sources'])).stdout, /^tcp 127\.0\.0\.0\/28 25 <reject>: 0 hits, last hit never\n  no sources sampled\n$/);
}

test('a group member serves metrics without root', async () => {
  const [cmd, ...args] = asNobody(gid);
  const server = spawn(cmd, [...args,
    process.execPath, asOther.tubectl, '--bpffs', bpffs, 'metrics', '127.0.0.1', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, fail) => {
      let out = '';
      let err = '';
      server.stdout!.on('data', (d) => {
        out += d;
        const m = /serving metrics on (\S+)\n/.exec(out);
        if (m) resolve(m[1]);
      });
      server.stderr!.on('data', (d) => { err += d; });
      server.once('exit', (code) => fail(new Error(`metrics exited (${code}): ${err}`)));
    });
    const text = await (await fetch(url)).text();
    assert.match(text, /^tubular_dispatcher_loaded 1$/m);
    assert.match(text, /^tubular_destination_bindings\{label="web",domain="ipv4",protocol="tcp"\} 1$/m);
    assert.match(text, /^tubular_rejects_total\{protocol="tcp",prefix="127\.0\.0\.0\/28",port="25"\} 0$/m);
  } finally {
    server.kill('SIGTERM');
  }
});

test('writing as a group member fails with exit 1 and names what is needed; state unchanged', async () => {
  const member = tubectlAsNobody(true);
  const before = ok(await tubectl(['bindings', '--json'])).stdout;
  for (const verb of [['load'], ['bind', 'x', 'tcp', '127.0.0.1', '1'], ['unbind', 'web', 'tcp', '127.0.0.0/24', '80'], ['unload'], ['upgrade'],
    ['unregister', 'web', 'ipv4', 'tcp'], ['load-bindings', emptyFile], ['sources', '--reset']]) {
    const r = await member(verb);
    assert.equal(r.code, 1, `${verb.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^tubectl: this command changes the dispatcher: run it as root \(or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; before Linux 5\.11 also CAP_SYS_RESOURCE\)/, verb.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  assert.equal(ok(await tubectl(['bindings', '--json'])).stdout, before);
});

test('outside the group, even reading is refused with a message naming the group', async () => {
  const r = await tubectlAsNobody(false)(['status']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^tubectl: reading the dispatcher needs root or membership of group ${group} \\(gid ${gid}\\), which owns `));
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('a group member runs bindings --stats, diff and rollback --dry-run; rollback itself needs root', async () => {
  const member = tubectlAsNobody(true);
  assert.match(ok(await member(['bindings', '--stats'])).stdout, /^protocol +prefix +port +label +hits +last hit\n/);
  const diff = ok(await member(['diff', emptyFile]));
  assert.match(diff.stdout, /\n0 added, 2 removed, 0 changed, 0 unchanged\n$/);
  assert.equal((await member(['diff', '--exit-code', emptyFile])).code, 3);
  assert.match((await member(['rollback', '--dry-run'])).stderr, /^tubectl: there is no previous generation to roll back to/);
  const grown = path.join(tmpdir(), `tubectl-grown-${process.pid}.json`);
  writeFileSync(grown, JSON.stringify({ bindings: [
    { label: 'web', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp' },
    { prefix: '127.0.0.0/28', port: 25, protocol: 'tcp', action: 'reject' },
    { label: 'web', prefix: '127.0.0.0/24', port: 81, protocol: 'tcp' },
  ] }));
  try {
    ok(await tubectl(['load-bindings', grown]));
  } finally {
    rmSync(grown, { force: true });
  }
  const dry = ok(await member(['rollback', '--dry-run']));
  assert.match(dry.stdout, /^rollback would go from generation 2 to generation 1 /);
  assert.match(dry.stdout, /\nremoved +tcp +127\.0\.0\.0\/24 +81 +web +0 +never\n0 added, 1 removed, 0 changed, 2 unchanged\n/);
  const r = await member(['rollback']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^tubectl: this command changes the dispatcher: run it as root/);
  assert.equal(JSON.parse(ok(await tubectl(['status', '--json'])).stdout).generations.inForce.number, 2);
});
