// Crash points: each writing verb of tubectl is killed with SIGKILL after
// each of its calls that changes state (test/lib/crash-points.ts explains
// which points and how; past 20 a verb, they are sampled), and after every
// kill:
//   (a) the next command works: the killed command, run again, succeeds (or
//       finds its work done), and the old configuration can be restored;
//   (b) traffic follows the old or the new configuration as a whole: real
//       TCP connections on loopback and BPF_PROG_TEST_RUN of the attached
//       program, over a grid of addresses and ports;
//   (c) `status --json` and `bindings --json` show the old or the new
//       configuration, and the attached program does exactly what they show;
//   (d) nothing leaks: after the next write the state holds only its pins,
//       no destination without a binding or a socket, no stale counter, no
//       intent mark; after unload the bpffs is empty;
//   (e) a handle kept open, as tubulard keeps one, whose own write was the
//       last before the kill, repairs on its next write what a fresh one
//       would (it skips most of the check only when no writer came between).
// Two labels have sockets (alpha, beta; alpha2 is a second socket for
// alpha); gamma never has one, so its bindings refuse.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { crashPoints, killAt, traceCalls, type CrashPoint } from './lib/crash-points.js';
import { isolate } from './lib/isolate.js';
import { readMeta } from './lib/meta.js';
import { tcpProbe, tcpServer, type Served } from './lib/traffic.js';
import { TUBECTL } from './lib/tubectl.js';
import { type Binding, type BindingInput, bindingId, matchBinding, parseBinding, toJSON } from '../src/binding.js';
import { run } from '../src/cli/main.js';
import { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { BPF_LINK_TYPE_NETNS, INNER_KINDS, META_INTENT, PIN, innerPin } from '../src/layout.js';
import { native } from '../src/native.js';
import { netnsInode } from '../src/netns.js';
import { formatAddress } from '../src/prefix.js';
import { probe } from '../src/probe.js';

const { bpffs } = isolate();
const sys = native();
const ino = netnsInode('/proc/self/ns/net');
const stateName = `${ino}_dispatcher`;
const stateDir = path.join(bpffs, stateName);
const PINS = [...Object.values(PIN), ...INNER_KINDS.flatMap((k) => [innerPin(k, 0), innerPin(k, 1)])].sort();
const files = mkdtempSync(path.join(tmpdir(), 'tubular-crash-'));

// ---- the two configurations ----

interface Config {
  /** null: no dispatcher loaded */
  bindings: Binding[] | null;
  /** label -> name of the server whose socket is registered */
  sockets: Record<string, string>;
}

const B = (label: string, prefix: string, port: number, action?: 'reject'): Binding =>
  parseBinding({ label, protocol: 'tcp', prefix, port, action });

const SET_A = [
  B('alpha', '127.0.0.0/24', 7001), B('beta', '127.0.0.0/24', 7002), B('beta', '127.0.0.16/28', 7001),
  B('', '127.0.0.32/28', 7002, 'reject'), B('alpha', '127.0.0.64/26', 0),
];
const SET_B = [
  B('beta', '127.0.0.0/24', 7001), B('alpha', '127.0.0.0/24', 7002), B('alpha', '127.0.0.16/28', 7003),
  B('gamma', '127.0.0.48/28', 7001), B('', '127.0.0.16/28', 7002, 'reject'), B('beta', '127.0.0.64/26', 0),
];
/** bind adds one of these to SET_A; unbind removes it again */
const STEER_X = B('beta', '127.0.0.20/30', 7001);
const GAMMA_Y = B('gamma', '127.0.0.40/30', 7001);

const REGISTERED = { alpha: 'alpha', beta: 'beta' };
const NONE: Config = { bindings: null, sockets: {} };
const EMPTY: Config = { bindings: [], sockets: {} };
const A: Config = { bindings: SET_A, sockets: REGISTERED };

const writeSet = (name: string, set: Binding[]): string => {
  const file = path.join(files, `${name}.json`);
  writeFileSync(file, JSON.stringify({ bindings: set.map(toJSON) }));
  return file;
};
const FILE_A = writeSet('a', SET_A);
const FILE_B = writeSet('b', SET_B);

// ---- what to ask, and what each configuration answers ----

interface Probe { address: Uint8Array; port: number }
const addr = (host: number): Uint8Array => Uint8Array.of(127, 0, 0, host);
const GRID: Probe[] = [5, 20, 22, 40, 42, 50, 70, 200].flatMap((h) => [7001, 7002, 7003, 7009].map((port) => ({ address: addr(h), port })));
const host = (p: Probe): string => formatAddress(4, p.address);
const probeName = (p: Probe): string => `${host(p)}:${p.port}`;

/** 'pass' (the kernel decides), 'drop', or the name of the server that gets it. */
function expected(c: Config, p: Probe): string {
  if (c.bindings === null) return 'pass';
  const b = matchBinding(c.bindings, 'tcp', 4, p.address, p.port);
  if (!b) return 'pass';
  if (b.action === 'reject') return 'drop';
  return c.sockets[b.label] ?? 'drop';
}

/** What a real connection sees: nothing listens on the probed ports, so the kernel refuses. */
const overTcp = (verdict: string): string => (verdict === 'pass' || verdict === 'drop' ? 'ECONNREFUSED' : verdict);

// ---- servers ----

const servers: Record<string, Served> = {};
const serverOf = new Map<bigint, string>();

before(async () => {
  for (const name of ['alpha', 'beta', 'alpha2']) {
    servers[name] = await tcpServer(name);
    serverOf.set(sys.socketInfo(servers[name].fd).cookie, name);
  }
});
after(async () => {
  for (const s of Object.values(servers)) await s.close();
  rmSync(files, { recursive: true, force: true });
});

// ---- tubectl: killed in a process of its own, otherwise in this one ----

const killedArgv = (args: readonly string[]): string[] => [process.execPath, TUBECTL, '--bpffs', bpffs, ...args];

interface Out { code: number; out: string; err: string }
async function tubectl(...args: string[]): Promise<Out> {
  let out = '';
  let err = '';
  const code = await run(['--bpffs', bpffs, ...args], {
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; } },
    getenv: (n) => process.env[n],
    pid: process.pid,
  });
  return { code, out, err };
}
const ok = (r: Out, what: string): Out => {
  assert.equal(r.code, 0, `${what} failed: ${r.err}`);
  return r;
};

function withDispatcher<T>(fn: (d: Dispatcher) => T): T {
  const d = Dispatcher.open({ bpffs });
  try {
    return fn(d);
  } finally {
    d.close();
  }
}

/** Loads a dispatcher in configuration A: sockets of alpha and beta, bindings of set A. */
async function loadA(): Promise<void> {
  ok(await tubectl('load'), 'load');
  withDispatcher((d) => {
    d.registerSocket('alpha', servers.alpha.fd);
    d.registerSocket('beta', servers.beta.fd);
  });
  ok(await tubectl('load-bindings', '--force', FILE_A), 'load-bindings a');
}

/** Whatever a failed test left: unloaded, then loaded in configuration A when asked. */
async function resetTo(config: Config): Promise<void> {
  if (Dispatcher.isLoaded({ bpffs })) Dispatcher.unload({ bpffs });
  if (config.bindings !== null) await loadA();
}

// ---- observing the data plane ----

/** The programs attached to this namespace by links pinned anywhere in the bpffs: [dir, prog fd]. */
function attachedPrograms(): { dir: string; fd: number }[] {
  const found: { dir: string; fd: number }[] = [];
  for (const dir of readdirSync(bpffs).filter((n) => n.startsWith(stateName))) {
    let link: number;
    try {
      link = sys.getPinned(path.join(bpffs, dir, PIN.link), 0);
    } catch {
      continue;
    }
    const info = sys.linkInfo(link);
    sys.close(link);
    if (info.type !== BPF_LINK_TYPE_NETNS || info.netnsIno !== ino) continue;
    // The link must only ever run a program that is pinned.
    const fd = ['program', 'program_new'].map((name) => {
      try {
        const p = sys.getPinned(path.join(bpffs, dir, name), 0);
        if (sys.progInfo(p).id === info.progId) return p;
        sys.close(p);
      } catch { /* not there */ }
      return -1;
    }).find((p) => p >= 0);
    assert.ok(fd !== undefined, `the link in ${dir} runs program ${info.progId}, which is not pinned there`);
    found.push({ dir, fd });
  }
  return found;
}

/** What the program attached to the namespace does with each probe ('pass' for all when none is). */
function programVerdicts(probes: readonly Probe[]): string[] {
  const progs = attachedPrograms();
  try {
    assert.ok(progs.length <= 1, `${progs.length} dispatchers are attached: ${progs.map((p) => p.dir).join(', ')}`);
    if (progs.length === 0) return probes.map(() => 'pass');
    return probes.map((p) => {
      const r = probe(progs[0].fd, { protocol: 'tcp', family: 4, address: p.address, port: p.port });
      if (r.verdict === 'drop') return 'drop';
      return r.cookie === 0n ? 'pass' : serverOf.get(r.cookie) ?? `socket ${r.cookie}`;
    });
  } finally {
    for (const p of progs) sys.close(p.fd);
  }
}

function table(probes: readonly Probe[], columns: Record<string, readonly string[]>): string {
  return probes.map((p, i) => `  ${probeName(p).padEnd(16)} ${Object.entries(columns).map(([k, v]) => `${k} ${v[i]}`.padEnd(24)).join(' ')}`).join('\n');
}

/** Fails unless the answers are exactly those of one of the configurations. */
function assertFollows(what: string, got: readonly string[], configs: readonly Config[], tcp: boolean): void {
  const want = configs.map((c) => GRID.map((p) => (tcp ? overTcp(expected(c, p)) : expected(c, p))));
  if (want.some((w) => w.every((v, i) => v === got[i]))) return;
  assert.fail(`${what} follows neither the old nor the new configuration:\n${table(GRID, { got, old: want[0], new: want.at(-1)! })}`);
}

async function trafficFollows(configs: readonly Config[]): Promise<void> {
  assertFollows('the attached program', programVerdicts(GRID), configs, false);
  const seen = await Promise.all(GRID.map((p) => tcpProbe(host(p), p.port)));
  assertFollows('TCP traffic', seen, configs, true);
}

// ---- observing what readers show ----

const canonical = (set: readonly Binding[]): string => JSON.stringify(set.map(toJSON).sort((a, b) => bindingId(parseBinding(a)).localeCompare(bindingId(parseBinding(b)))));
const sameConfig = (a: Config, b: Config): boolean =>
  (a.bindings === null || b.bindings === null ? a.bindings === b.bindings : canonical(a.bindings) === canonical(b.bindings)) &&
  JSON.stringify(Object.entries(a.sockets).sort()) === JSON.stringify(Object.entries(b.sockets).sort());
const describeConfig = (c: Config): string =>
  c.bindings === null ? 'not loaded' : `${c.bindings.map((b) => `${toJSON(b).label || '<reject>'} ${bindingId(b)}`).join(', ')}; sockets ${JSON.stringify(c.sockets)}`;

interface StatusJSON {
  loaded: boolean;
  programId: number | null;
  attached: boolean | null;
  bindings: number;
  destinations: { label: string; domain: string; protocol: string; socket: string | null; bindings: number }[];
}

/** The configuration `status --json` and `bindings --json` show. */
async function shown(): Promise<Config> {
  const s = await tubectl('status', '--json');
  const status = JSON.parse(s.out) as StatusJSON;
  if (!status.loaded) {
    assert.equal(s.code, 1);
    assert.match(s.err, /no dispatcher is loaded/);
    return NONE;
  }
  ok(s, 'status');
  if (status.attached === false) {
    // An unload died after detaching: nothing is steered, and status says so.
    assert.match(ok(await tubectl('status'), 'status').out, /detached: no traffic is steered/);
    // explain does not answer for a program that decides nothing, and the boot unit's load does not call it loaded.
    for (const args of [['explain', 'tcp', '127.0.0.1', '80'], ['load', '--if-not-loaded']]) {
      const r = await tubectl(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, /is detached \(an unload was interrupted\): no traffic is steered; run tubectl unload to finish it, then tubectl load\n$/, args.join(' '));
    }
    return NONE;
  }
  assert.equal(status.attached, true);
  // status names the program the link runs, also when an upgrade died between switching the link and renaming its pin.
  const link = sys.getPinned(path.join(stateDir, PIN.link), 0);
  try {
    assert.equal(status.programId, sys.linkInfo(link).progId, 'status names another program than the link runs');
  } finally {
    sys.close(link);
  }
  // explain asks that program, and it agrees with the maps.
  ok(await tubectl('explain', 'tcp', '127.0.0.1', '7009'), 'explain');
  const listed = (JSON.parse(ok(await tubectl('bindings', '--json'), 'bindings').out) as { bindings: BindingInput[] })
    .bindings.map((b) => parseBinding(b));
  assert.equal(status.bindings, listed.length, 'status and bindings count different bindings');
  const sockets: Record<string, string> = {};
  for (const d of status.destinations) {
    if (d.socket !== null && d.domain === 'ipv4' && d.protocol === 'tcp') sockets[d.label] = serverOf.get(BigInt(d.socket)) ?? `socket ${d.socket}`;
  }
  return { bindings: listed, sockets };
}

/** (c): readers show the old or the new configuration, and the attached program does what they show. */
async function readersAgree(configs: readonly Config[]): Promise<Config> {
  const c = await shown();
  assert.ok(configs.some((k) => sameConfig(k, c)),
    `status and bindings show neither the old nor the new configuration:\n  shown: ${describeConfig(c)}\n  old:   ${describeConfig(configs[0])}\n  new:   ${describeConfig(configs.at(-1)!)}`);
  // Every listed binding is probed too, inside its prefix.
  const inside = (c.bindings ?? []).map((b) => {
    const a = Uint8Array.from(b.prefix.bytes);
    if (b.prefix.length < 32) a[3] |= 1;
    return { address: a, port: b.port || 7009 };
  });
  const probes = [...GRID, ...inside];
  const got = programVerdicts(probes);
  const want = probes.map((p) => expected(c, p));
  assert.deepEqual(got, want, `the attached program does not do what status and bindings show (${describeConfig(c)}):\n${table(probes, { got, shown: want })}`);
  return c;
}

// ---- leaks ----

/**
 * A load killed between creating its temporary directory and the lock in
 * it, or an unload killed between removing the lock and the directory,
 * leaves an empty directory that nobody can tell from one whose owner is
 * still at work; load and unload remove it once it is a minute old. It
 * must hold nothing: the test checks that and removes it, so that later
 * checks stay strict.
 */
function emptyLeftover(name: string): boolean {
  if (!new RegExp(`^${stateName}_(create|unload)_[0-9a-f]{16}$`).test(name)) return false;
  const dir = path.join(bpffs, name);
  if (readdirSync(dir).length > 0) return false;
  rmdirSync(dir);
  return true;
}

/** (d), after a write that succeeded: only the pins, every destination used, no stale counter, no intent mark. */
async function clean(loaded: boolean): Promise<void> {
  const entries = readdirSync(bpffs).filter((n) => !n.endsWith('.debug') && !emptyLeftover(n));
  assert.deepEqual(entries, loaded ? [stateName] : [], 'the bpffs holds leftovers');
  if (!loaded) return;
  assert.deepEqual(readdirSync(stateDir).sort(), PINS, 'the state holds other pins than the dispatcher\'s');
  const list = JSON.parse(ok(await tubectl('list', '--json'), 'list').out) as StatusJSON;
  withDispatcher((d) => {
    // A destination is kept while a binding of either generation (the one
    // in force, or the previous one, for rollback) uses it, or a socket serves it.
    const previous = d.previousSlot();
    const used = new Set([...d.bindings(), ...(previous === null ? [] : d.bindings(previous))]
      .filter((b) => b.label !== '').map((b) => `${b.label} ${b.prefix.family === 4 ? 'ipv4' : 'ipv6'} ${b.protocol}`));
    for (const x of list.destinations) {
      assert.ok(x.socket !== null || used.has(`${x.label} ${x.domain} ${x.protocol}`), `destination ${x.label} ${x.domain} ${x.protocol} has no binding and no socket`);
    }
    const s = d.status();
    const prog = sys.getPinned(path.join(stateDir, PIN.program), 0);
    const link = sys.getPinned(path.join(stateDir, PIN.link), 0);
    try {
      assert.equal(sys.linkInfo(link).progId, sys.progInfo(prog).id, 'the link runs another program than the one pinned');
      assert.equal(s.programId, sys.progInfo(prog).id);
    } finally {
      sys.close(prog);
      sys.close(link);
    }
  });
  assert.equal(intentMark(), 0n, 'the intent mark is still set after a write that succeeded');
}

const intentMark = (): bigint => readMeta(stateDir, META_INTENT);

/**
 * (e): the next write of `held`, which wrote last before the kill, leaves
 * no pending pin and no intent mark. After a killed unload it may only
 * say that nothing is loaded.
 */
function heldWriteRepairs(held: Dispatcher, unloading: boolean): void {
  try {
    held.registerSocket('alpha', servers.alpha.fd);
  } catch (err) {
    if (unloading && err instanceof TubularError && err.code === 'ENOTLOADED') return;
    throw err;
  }
  assert.deepEqual(readdirSync(stateDir).filter((n) => n.endsWith('_new')), [], 'the held handle\'s write left pending pins');
  assert.equal(intentMark(), 0n, 'the intent mark is still set after the held handle\'s write');
}

// ---- the walk ----

interface Scenario {
  /** the command, as tubectl's arguments */
  args: string[];
  old: Config;
  new: Config;
  /** from the new configuration back to the old one */
  restore(): Promise<void>;
  /** how the command, run again, may fail when the killed one already did its work */
  doneAlready?: RegExp;
  /** from configuration A (or nothing loaded) to the old configuration */
  prepare?(): Promise<void>;
  /** the command run again after a kill, when running s.args again is not right (rollback toggles) */
  again?(): Promise<void>;
}

/** Most crash points walked per verb (TUBULAR_CRASH_MAX; TUBULAR_CRASH_WALK=all walks every call). */
const MAX_POINTS = process.env.TUBULAR_CRASH_WALK === 'all' ? Infinity : Number(process.env.TUBULAR_CRASH_MAX ?? 20);

/**
 * At most MAX_POINTS of the points, in order: first those next to a link
 * change, a rename or a directory (where recovery decides), then those next
 * to a pin or an unlink, then the others, each kind spread evenly.
 */
function sample(points: readonly CrashPoint[]): CrashPoint[] {
  if (points.length <= MAX_POINTS) return [...points];
  const spread = (from: readonly CrashPoint[], n: number): CrashPoint[] =>
    n >= from.length ? [...from] : Array.from({ length: n }, (_, i) => from[Math.round((i * (from.length - 1)) / Math.max(1, n - 1))]);
  const tiers = [/LINK_|rename|mkdir|rmdir/, /OBJ_PIN|unlink/, /./];
  const chosen = new Set<CrashPoint>();
  for (const tier of tiers) {
    const left = points.filter((p) => !chosen.has(p) && tier.test(p.what));
    for (const p of spread(left, MAX_POINTS - chosen.size)) chosen.add(p);
  }
  return points.filter((p) => chosen.has(p));
}

async function walk(t: TestContext, name: string, s: Scenario): Promise<void> {
  const loadedOld = s.old.bindings !== null;
  const loadedNew = s.new.bindings !== null;
  await resetTo(loadedOld ? A : NONE);
  await s.prepare?.();
  // Once through and back first: from then on the previous generation (kept
  // for rollback, and with it the destinations it uses) is the same before
  // every run, so every run makes the same calls.
  ok(await tubectl(...s.args), `${name} (first run)`);
  await s.restore();
  // Probed as after every point (probes count refusals, which later calls depend on).
  assert.ok(sameConfig(await readersAgree([s.old]), s.old));
  // Count: the command runs to completion under the tracer.
  const { calls, result } = await traceCalls(killedArgv(s.args));
  assert.equal(result.code, 0, `${name} failed under the tracer: ${result.stderr}`);
  assert.ok(sameConfig(await readersAgree([s.new]), s.new));
  await s.restore();
  assert.ok(sameConfig(await readersAgree([s.old]), s.old));

  const all = crashPoints(calls);
  const points = sample(all);
  for (const point of points) {
    const where = `${name}, killed ${point.what} (${point.syscall} #${point.n})`;
    // (e): opened and written before the kill (alpha's socket again: the state stays as it was).
    const held = loadedOld ? Dispatcher.open({ bpffs }) : undefined;
    try {
      held?.registerSocket('alpha', servers.alpha.fd);
      const k = await killAt(killedArgv(s.args), point);
      assert.ok(k.killed, `not killed: exit ${k.result.code}, ${k.result.stderr}`);
      // The same state before each run makes the same calls.
      assert.equal(k.at, point.call, 'killed at another call than counted');
      // (b) and (c), as the crash left it
      await trafficFollows([s.old, s.new]);
      await readersAgree([s.old, s.new]);
      if (held) heldWriteRepairs(held, !loadedNew);
      // (a): the same command again, then the state is the new one
      if (s.again) {
        await s.again();
      } else {
        const again = await tubectl(...s.args);
        if (again.code !== 0) assert.match(again.err, s.doneAlready ?? /^$/, `${s.args[0]} run again failed`);
      }
      assert.ok(sameConfig(await readersAgree([s.new]), s.new), 'run again, the command did not reach the new configuration');
      await trafficFollows([s.new]);
      await clean(loadedNew);
      // ... and back: the old configuration can be restored
      await s.restore();
      assert.ok(sameConfig(await readersAgree([s.old]), s.old), 'the old configuration could not be restored');
      await clean(loadedOld);
    } catch (err) {
      const e = err as Error;
      e.message = `${where}: ${e.message}`;
      e.stack = `${where}: ${e.stack}`;
      throw err;
    } finally {
      held?.close();
    }
  }
  const bySyscall = new Map<string, number>();
  for (const p of points) bySyscall.set(p.syscall, (bySyscall.get(p.syscall) ?? 0) + 1);
  const counted = new Map<string, number>();
  for (const c of calls) counted.set(c.syscall, (counted.get(c.syscall) ?? 0) + 1);
  const line = `${name}: ${points.length} crash points${points.length < all.length ? ` (sampled from ${all.length})` : ''} over ${calls.length} calls` +
    ` (${[...counted].map(([sc, n]) => `${sc} ${bySyscall.get(sc) ?? 0} of ${n}`).join(', ')})`;
  t.diagnostic(line);
}

// ---- the verbs ----

const withX = (set: Binding[], x: Binding): Config => ({ bindings: [...set, x], sockets: REGISTERED });

test('load', async (t) => {
  await walk(t, 'load', {
    args: ['load'], old: NONE, new: EMPTY, doneAlready: /already loaded/,
    restore: async () => { ok(await tubectl('unload'), 'unload'); },
  });
});

test('load-bindings', async (t) => {
  await walk(t, 'load-bindings', {
    args: ['load-bindings', '--force', FILE_B], old: A, new: { bindings: SET_B, sockets: REGISTERED },
    restore: async () => { ok(await tubectl('load-bindings', '--force', FILE_A), 'load-bindings a'); },
  });
});

test('rollback', async (t) => {
  const B: Config = { bindings: SET_B, sockets: REGISTERED };
  await walk(t, 'rollback', {
    // In force B, A the previous generation: a rollback puts A back in force.
    args: ['rollback', '--force'], old: B, new: A,
    prepare: async () => { ok(await tubectl('load-bindings', '--force', FILE_B), 'load-bindings b'); },
    restore: async () => { ok(await tubectl('rollback', '--force'), 'rollback back'); },
    // Rollback toggles: after a kill it is run again only if it had not
    // flipped yet; if it had, the next write (the same set again, a no-op)
    // is what must work, and it repairs what the kill left.
    again: async () => {
      if (!sameConfig(await shown(), A)) ok(await tubectl('rollback', '--force'), 'rollback again');
      else ok(await tubectl('load-bindings', '--force', FILE_A), 'the next write');
    },
  });
});

for (const x of [STEER_X, GAMMA_Y]) {
  // The guard is not what this test is about: its probes make every binding live.
  const args = (verb: string): string[] => [verb, ...(verb === 'unbind' ? ['--force'] : []), x.label, 'tcp', toJSON(x).prefix, String(x.port)];
  test(`bind ${x.label}`, async (t) => {
    await walk(t, `bind (${x.label === 'gamma' ? 'a new destination' : 'over another label'})`, {
      args: args('bind'), old: A, new: withX(SET_A, x),
      restore: async () => { ok(await tubectl(...args('unbind')), 'unbind'); },
    });
  });
  test(`unbind ${x.label}`, async (t) => {
    await walk(t, `unbind (${x.label === 'gamma' ? 'its destination unused' : 'back to another label'})`, {
      args: args('unbind'), old: withX(SET_A, x), new: A, doneAlready: /there is no binding/,
      prepare: async () => { ok(await tubectl(...args('bind')), 'bind'); },
      restore: async () => { ok(await tubectl(...args('bind')), 'bind'); },
    });
  });
}

test('register-pid', async (t) => {
  await walk(t, 'register-pid', {
    args: ['register-pid', String(process.pid), 'alpha', 'tcp', '127.0.0.1', String(servers.alpha2.port)],
    old: A, new: { bindings: SET_A, sockets: { ...REGISTERED, alpha: 'alpha2' } },
    restore: async () => { withDispatcher((d) => d.registerSocket('alpha', servers.alpha.fd)); },
  });
});

test('unregister', async (t) => {
  await walk(t, 'unregister', {
    args: ['unregister', 'beta', 'ipv4', 'tcp'], old: A, new: { bindings: SET_A, sockets: { alpha: 'alpha' } },
    doneAlready: /no socket is registered/,
    restore: async () => { withDispatcher((d) => d.registerSocket('beta', servers.beta.fd)); },
  });
});

test('upgrade', async (t) => {
  await walk(t, 'upgrade', { args: ['upgrade'], old: A, new: A, restore: async () => {} });
});

test('unload', async (t) => {
  await walk(t, 'unload', {
    args: ['unload'], old: A, new: NONE, doneAlready: /no dispatcher is loaded/,
    restore: loadA,
  });
  ok(await tubectl('unload'), 'unload');
  await clean(false);
});
