// tubectl load, status, list, upgrade, unload and version, as a subprocess
// in a throwaway namespace: output, --json and exit codes.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { TUBECTL, ok, runCommand, tubectlFor } from './lib/tubectl.js';
import { autoVariant, variantCases } from './lib/variants.js';
import { netnsInode } from '../src/netns.js';
import { LAYOUT_VERSION, META_MAGIC, META_STAMP } from '../src/layout.js';
import { writeMeta } from './lib/meta.js';
import { native } from '../src/native.js';
import { CAP_SYS_RESOURCE, hasCapability } from '../src/capabilities.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const stateDir = path.join(bpffs, `${netnsInode('/proc/self/ns/net')}_dispatcher`);
// What load picks here: full on Linux 5.17 and newer, compat before.
const auto = autoVariant();
const fullRuns = variantCases().find((c) => c.program === 'full')!.lacks === false;
const VARIANT_TEXT = { full: 'full: walks prefix lengths in bpf_loop', compat: 'compat: an unrolled walk, for kernels without bpf_loop' };

// The tests below expect what the probes find: this one checks the probes
// against the kernel, so that a probe wrongly finding less cannot turn the
// kernel matrix's rows into compat runs that pass.
test('the probes on this kernel: all the full program needs on Linux 5.17 and newer; on 5.10 what test 18 assumes of Debian\'s', () => {
  const features = native().probeFeatures();
  const [major, minor] = release().split('.').map(Number);
  if (major > 5 || (major === 5 && minor >= 17)) {
    assert.deepEqual(features, { skLookup: true, skAssign: true, loop: true, ktimeCoarse: true, ingressIfindex: true, testRun: true }, release());
    assert.equal(auto, 'full');
  } else if (major === 5 && minor === 10) {
    assert.deepEqual(features, { skLookup: true, skAssign: true, loop: false, ktimeCoarse: false, ingressIfindex: false, testRun: true }, release());
    assert.equal(auto, 'compat');
  } else {
    assert.ok(features.skLookup && features.skAssign, `${release()}: ${JSON.stringify(features)}`);
  }
});

describe('not loaded', () => {
  test('status fails with exit 1 and says to run tubectl load; --json still prints one document', async () => {
    const r = await tubectl(['status']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tubectl: no dispatcher is loaded in network namespace .*run tubectl load\n$/);
    const j = await tubectl(['status', '--json']);
    assert.equal(j.code, 1);
    assert.deepEqual(JSON.parse(j.stdout), { loaded: false, netns: '/proc/self/ns/net' });
    for (const verb of [['bindings'], ['list'], ['unload'], ['upgrade'], ['bind', 'a', 'tcp', '127.0.0.1', '1'], ['unregister', 'a', 'ipv4', 'tcp']]) {
      const v = await tubectl(verb);
      assert.equal(v.code, 1, verb.join(' '));
      assert.match(v.stderr, /run tubectl load/, verb.join(' '));
      assert.doesNotMatch(v.stderr, /\n\s+at /);
    }
  });

  test('load-bindings says what is wrong with the file first, then that nothing is loaded', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tubectl-lifecycle-'));
    try {
      const bad = path.join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify({ bindings: [{ label: 'a b', prefix: '127.0.0.1', port: 1 }] }));
      const b = await tubectl(['load-bindings', bad]);
      assert.equal(b.code, 1);
      assert.match(b.stderr, /bad\.json is invalid, nothing was changed: bindings\[0\]\.label = "a b"/);
      const good = path.join(dir, 'good.json');
      writeFileSync(good, JSON.stringify({ bindings: [{ label: 'a', prefix: '127.0.0.1', port: 1 }] }));
      const g = await tubectl(['load-bindings', good]);
      assert.equal(g.code, 1);
      assert.match(g.stderr, /no dispatcher is loaded .*run tubectl load/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lifecycle', () => {
  test('load, status, load again fails, upgrade, unload', async () => {
    const load = ok(await tubectl(['load']));
    assert.match(load.stdout, auto === 'full'
      ? /^loaded dispatcher into \/proc\/self\/ns\/net: program \d+ \(full: this kernel has everything it needs\), link \d+\n/
      : /^loaded dispatcher into \/proc\/self\/ns\/net: program \d+ \(compat: this kernel lacks .*\(Linux 5\.17\).*\), link \d+\n/);
    assert.ok(existsSync(stateDir));

    const again = await tubectl(['load']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already loaded.*tubectl upgrade.*tubectl unload/);

    const text = ok(await tubectl(['status'])).stdout;
    assert.match(text, /^dispatcher loaded in \/proc\/self\/ns\/net/);
    assert.match(text, /bindings: 0\n/);
    assert.match(text, /Destinations:\nno destinations\n/);
    const s = JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(s), ['loaded', 'netns', 'netnsInode', 'stateDir', 'programId', 'program', 'linkId', 'attached', 'layoutVersion', 'bindings', 'destinations', 'rejects', 'generations']);
    assert.deepEqual(s.program, { id: s.programId, variant: auto });
    assert.ok(text.includes(`  program:  ${s.programId} (${VARIANT_TEXT[auto]})\n`), text);
    const g = s.generations as { inForce: Record<string, unknown>; previous: unknown };
    assert.deepEqual(Object.keys(g.inForce), ['number', 'applied', 'digest', 'bindings']);
    assert.equal(g.inForce.number, 1);
    assert.match(String(g.inForce.applied), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(g.previous, null);
    assert.match(text, /  in force: generation 1, applied \S+Z \(\d+[sm] ago\), 0 bindings, digest none\n  previous: none\n/);
    assert.equal(s.loaded, true);
    assert.equal(s.stateDir, stateDir);
    assert.equal(s.bindings, 0);
    assert.ok(typeof s.programId === 'number' && typeof s.linkId === 'number');
    assert.equal(s.attached, true);

    const up = ok(await tubectl(['upgrade']));
    const m = /program (\d+) -> (\d+)/.exec(up.stdout);
    assert.ok(m, up.stdout);
    assert.equal(Number(m[1]), s.programId);
    const after = JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as Record<string, unknown>;
    assert.equal(after.programId, Number(m[2]));
    assert.notEqual(after.programId, s.programId);
    assert.equal(after.linkId, s.linkId);

    // The compat program on this kernel too, as an operator may want fleet-wide; a plain upgrade keeps it.
    assert.match(ok(await tubectl(['upgrade', '--program', 'compat'])).stdout,
      auto === 'full' ? /program \d+ -> \d+ \(full -> compat: as asked\)\n$/ : /program \d+ -> \d+ \(compat: as asked\)\n$/);
    assert.ok(ok(await tubectl(['status'])).stdout.includes(`(${VARIANT_TEXT.compat})\n`));
    assert.match(ok(await tubectl(['upgrade'])).stdout, /program \d+ -> \d+ \(compat: the variant in force \(--program full or auto changes it\)\)\n$/);
    assert.equal((JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { program: { variant: string } }).program.variant, 'compat');
    if (fullRuns) {
      assert.match(ok(await tubectl(['upgrade', '--program=full'])).stdout, /\(compat -> full: as asked\)\n$/);
    } else {
      // An older kernel: a sentence naming the version, no verifier log, nothing changed.
      const refused = await tubectl(['upgrade', '--program=full']);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /^tubectl: this kernel \(.*\) lacks the bpf_loop helper .*: the full program needs Linux 5\.17 or newer; --program compat \(or auto\) runs on Linux 5\.10 and newer\n$/);
      assert.equal((JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { program: { variant: string } }).program.variant, 'compat');
    }
    const bad = await tubectl(['upgrade', '--program', 'fast']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^tubectl: invalid --program "fast": use auto, full, compat \(see tubectl upgrade --help\)\n$/);

    assert.deepEqual(JSON.parse(ok(await tubectl(['list', '--json'])).stdout), { destinations: [] });
    assert.equal(ok(await tubectl(['list'])).stdout, 'no destinations\n');

    assert.match(ok(await tubectl(['unload'])).stdout, /^unloaded dispatcher from \/proc\/self\/ns\/net/);
    assert.equal(existsSync(stateDir), false);

    // Loaded as compat from the start; a bad --program is refused before anything is made.
    const bad2 = await tubectl(['load', '--program', 'old']);
    assert.equal(bad2.code, 2);
    assert.equal(existsSync(stateDir), false);
    assert.match(ok(await tubectl(['load', '--program', 'compat'])).stdout, /program \d+ \(compat: as asked\)/);
    assert.equal((JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { program: { variant: string } }).program.variant, 'compat');
    ok(await tubectl(['unload']));
  });

  test("tubular's single-dash -bpffs and -netns work before the verb", async () => {
    const other = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
    try {
      const netns = `/proc/${other.pid}/ns/net`;
      await waitFor(() => existsSync(netns) && netnsInode(netns) !== netnsInode('/proc/self/ns/net'));
      const r = await tubectlFor(bpffs, {})(['-netns', netns, 'load']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(path.join(bpffs, `${netnsInode(netns)}_dispatcher`)));
      assert.equal(existsSync(stateDir), false, 'the caller\'s namespace stays untouched');
      const s = JSON.parse(ok(await tubectl([`-netns=${netns}`, 'status', '--json'])).stdout) as { netns: string };
      assert.equal(s.netns, netns);
      ok(await tubectl(['--netns', netns, 'unload']));
    } finally {
      other.kill();
    }
  });

  test('bin/tubectl and bin/tubulard start node without NODE_EXTRA_CA_CERTS (no TLS: node would parse the bundle at every start)', async () => {
    // node warns on stderr about a bundle it cannot load: a start that never reads it says nothing.
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/tubular-test-ca.pem' };
    const bare = await runCommand(process.execPath, ['-e', '0'], { env });
    assert.match(bare.stderr, /extra certs/i, 'node itself reads the variable');
    const root = path.resolve(path.dirname(TUBECTL), '../../..');
    for (const [cmd, args] of [['bin/tubectl', ['version']], ['bin/tubulard', ['--version']]] as const) {
      const r = await runCommand(path.join(root, cmd), args, { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '', cmd);
    }
  });

  test('state of another layout: upgrade, status, bindings and load --if-not-loaded refuse it with exit 1, naming both layouts; load finds it loaded; unload, then load, start anew', async () => {
    ok(await tubectl(['load']));
    try {
      // Of this layout, the boot unit's load succeeds over it.
      assert.match(ok(await tubectl(['load', '--if-not-loaded'])).stdout, /^dispatcher already loaded in \S+: nothing to do\n$/);
      // What the version before wrote.
      writeMeta(stateDir, META_STAMP, (BigInt(META_MAGIC) << 32n) | BigInt(LAYOUT_VERSION - 1));
      for (const args of [['upgrade'], ['status'], ['bindings'], ['load', '--if-not-loaded']]) {
        const verb = args.join(' ');
        const r = await tubectl(args);
        assert.equal(r.code, 1, verb);
        assert.match(r.stderr, new RegExp(`has state layout ${LAYOUT_VERSION - 1}, this tubectl understands ${LAYOUT_VERSION}: use the matching version, or tubectl unload and load again \\(bindings and registrations are lost\\)\n$`), verb);
        assert.doesNotMatch(r.stderr, /\n\s+at /, verb);
      }
      const again = await tubectl(['load']);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /a dispatcher is already loaded .*tubectl unload first\n$/);
      ok(await tubectl(['unload']));
      ok(await tubectl(['load']));
      assert.equal(JSON.parse(ok(await tubectl(['status', '--json'])).stdout).layoutVersion, LAYOUT_VERSION);
    } finally {
      await tubectl(['unload']);
    }
  });

  test('a second dispatcher in the same namespace, under another bpffs, is loaded with a warning naming the first', async () => {
    const other = mkdtempSync(path.join(tmpdir(), 'tubular-bpffs-other-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', other]);
    const second = tubectlFor(other);
    try {
      const first = ok(await tubectl(['load']));
      assert.equal(first.stderr, '', 'alone in its namespace: no warning');
      const firstLink = /link (\d+)/.exec(first.stdout)![1];
      const firstProgram = /program (\d+)/.exec(first.stdout)![1];
      const r = ok(await second(['load']));
      assert.match(r.stdout, /^loaded dispatcher into /);
      assert.match(r.stderr, new RegExp(`^tubectl: warning: another sk_lookup program was already attached to this namespace \\(link ${firstLink}, program ${firstProgram}\\): ` +
        'the kernel runs it on every new connection too, before this one\\. If it is a dispatcher loaded under another bpffs \\(TUBULAR_BPFFS, --bpffs\\), unload one of the two'));
    } finally {
      await second(['unload']);
      await tubectl(['unload']);
      execFileSync('umount', [other]);
      rmSync(other, { recursive: true, force: true });
    }
  });

  test('every writing verb works with the capabilities the messages name, on every kernel; without CAP_PERFMON, a kernel whose verifier then refuses says so', async () => {
    const run = (caps: string) => tubectlFor(bpffs, { prefix: ['setpriv', `--bounding-set=${caps}`, `--inh-caps=${caps}`, `--ambient-caps=${caps}`] });
    // What the messages name (WRITER_CAPABILITIES), and not CAP_SYS_ADMIN: the kernel lists links to it only.
    // (CAP_SYS_RESOURCE when this process has it to give: some sandboxes withhold it, and 5.11 and newer do without.)
    const resource = hasCapability(CAP_SYS_RESOURCE) ? ',+sys_resource' : '';
    const capped = run(`-all,+bpf,+net_admin,+perfmon${resource}`);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tubectl-capped-')), 'b.json');
    writeFileSync(file, JSON.stringify({ bindings: [{ label: 'capped', prefix: '127.0.0.0/24', port: 81 }] }));
    try {
      const loaded = ok(await capped(['load']));
      assert.match(loaded.stdout, /^loaded dispatcher into /);
      assert.equal(loaded.stderr, '');
      ok(await capped(['bind', 'capped', 'tcp', '127.0.0.0/24', '80']));
      ok(await capped(['load-bindings', '--force', file]));
      ok(await capped(['upgrade']));
    } finally {
      await capped(['unload']);
    }
    // Without CAP_PERFMON: 6.12 and newer load; 5.10 and 6.1 refuse the program, and the message says what is missing.
    const bare = await run(`-all,+bpf,+net_admin${resource}`)(['load']);
    if (bare.code !== 0) assert.match(bare.stderr, /^tubectl: this command changes the dispatcher: run it as root \(or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; before Linux 5\.11 also CAP_SYS_RESOURCE\); this kernel's verifier refused the (full|compat) program to a process without CAP_PERFMON/);
    await tubectl(['unload']);
  });

  test('version, as text and JSON', async () => {
    assert.match(ok(await tubectl(['version'])).stdout, /^tubectl \d+\.\d+\.\d+ \(node v\d+/);
    const v = JSON.parse(ok(await tubectl(['version', '--json'])).stdout) as { version: string; layoutVersion: number };
    assert.match(v.version, /^\d+\.\d+\.\d+/);
    assert.equal(v.layoutVersion, LAYOUT_VERSION);
    // TUBECTL.md's examples show this build's layout (they go stale at every bump otherwise).
    const doc = readFileSync(path.resolve(path.dirname(TUBECTL), '../../../docs/TUBECTL.md'), 'utf8');
    assert.deepEqual([...doc.matchAll(/state layout (\d+)\)|"layoutVersion": (\d+)|\(layout (\d+)\)/g)].map((m) => Number(m[1] ?? m[2] ?? m[3])),
      [LAYOUT_VERSION, LAYOUT_VERSION, LAYOUT_VERSION]);
  });
});

describe('where the state is without --bpffs: TUBULAR_BPFFS, then /etc/default/tubular, then /sys/fs/bpf', () => {
  // This file runs in a mount namespace of its own: a tmpfs over /etc/default
  // hides the host's files from it and its children only.
  const defaults = '/etc/default/tubular';
  const bare = (args: readonly string[], env: NodeJS.ProcessEnv = {}) => {
    const { TUBULAR_BPFFS: _, ...rest } = process.env;
    return runCommand(process.execPath, [TUBECTL, ...args], { env: { ...rest, ...env } });
  };
  before(async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', '/etc/default']);
    ok(await tubectl(['load']));
  });
  after(() => {
    execFileSync('umount', ['/etc/default']);
  });

  test('the file names the bpffs: status finds the dispatcher there', async () => {
    writeFileSync(defaults, `# where the state is\nTUBULAR_BPFFS="${bpffs}"\n`);
    const s = JSON.parse(ok(await bare(['status', '--json'])).stdout) as { loaded: boolean; stateDir: string };
    assert.equal(s.loaded, true);
    assert.equal(s.stateDir, stateDir);
  });

  test('TUBULAR_BPFFS in the environment wins over the file, and --bpffs over both', async () => {
    writeFileSync(defaults, `TUBULAR_BPFFS=${bpffs}\n`);
    const fromEnv = await bare(['status'], { TUBULAR_BPFFS: '/tmp' });
    assert.equal(fromEnv.code, 1);
    assert.match(fromEnv.stderr, /\/tmp.*not a bpffs/);
    ok(await bare(['--bpffs', bpffs, 'status'], { TUBULAR_BPFFS: '/tmp' }));
  });

  test('no file, no variable: /sys/fs/bpf, where this namespace has no dispatcher', async () => {
    rmSync(defaults, { force: true });
    const r = await bare(['status', '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { loaded: boolean }).loaded, false);
  });

  test('a value tubectl cannot read as the units do is refused with the line, exit 1, nothing done; --bpffs still works', async () => {
    for (const [text, why] of [
      ['TUBULAR_BPFFS=$STATE/bpffs\n', /\/etc\/default\/tubular line 1: TUBULAR_BPFFS="\$STATE\/bpffs" uses shell expansion.*pass --bpffs PATH/],
      ['\n\nTUBULAR_BPFFS=run/bpffs\n', /line 3: TUBULAR_BPFFS="run\/bpffs" is not an absolute path/],
      ['TUBULAR_BPFFS="/run/bpffs\n', /line 1: .*opens a quote it does not close/],
      [`export TUBULAR_BPFFS=${bpffs}\n`, /line 1: systemd ignores a line that starts with export/],
      [`TUBULAR_BPFFS=${'x'.repeat(70_000)}\n`, /defaults file \/etc\/default\/tubular is [\d.]+ KiB, over the limit of 64 KiB: .*; or pass --bpffs PATH/],
    ] as const) {
      writeFileSync(defaults, text);
      const r = await bare(['bind', 'web', 'tcp', '127.0.0.0/24', '80']);
      assert.equal(r.code, 1, text.slice(0, 40));
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.ok(r.stderr.length < 400, r.stderr.slice(0, 500));
    }
    ok(await bare(['--bpffs', bpffs, 'status']));
    assert.equal(JSON.parse(ok(await bare(['--bpffs', bpffs, 'bindings', '--json'])).stdout).bindings.length, 0);
  });

  test('unload', async () => {
    ok(await bare(['--bpffs', bpffs, 'unload']));
  });
});

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'condition never became true');
}
