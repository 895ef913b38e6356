// Limits per user: no member of the socket's group can take every
// connection, nor every destination; root always keeps room. The users
// exist only in this test's mount namespace.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addAccounts, asUser } from './lib/accounts.js';
import { isolate } from './lib/isolate.js';
import { startDaemon, workDir } from './lib/daemon.js';
import { installed } from './lib/installed.js';
import { tcpProbe, tcpServer } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { HandoffClient, type Reply, registerSockets } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const asOther = installed();
const dir = workDir();
chmodSync(dir, 0o755);

const CLIENTS = 64200;
const users = { tlalice: 64021, tlbob: 64022, tlcarol: 64023 };

interface Held { served: number; refused: { code: string; message: string }[]; child: ChildProcess; release(): Promise<void> }

/** Runs hold-connections as a user: `count` connections, kept until release(). */
function hold(user: keyof typeof users, socket: string, count: number): Promise<Held> {
  const [cmd, args] = asUser(user, [process.execPath, asOther.helper('hold-connections'), socket, String(count)]);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const release = (): Promise<void> => new Promise((ok) => {
    if (child.exitCode !== null) { ok(); return; }
    child.once('exit', () => ok());
    child.stdin!.end();
  });
  return new Promise((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) ok({ ...(JSON.parse(out) as { served: number; refused: Held['refused'] }), child, release });
    });
    child.once('exit', (code) => fail(new Error(`hold-connections exited early (${code}): ${out}`)));
  });
}

/** Pings on a new root connection; the reply's code. */
async function rootPing(socket: string): Promise<string> {
  const c = HandoffClient.connect(socket);
  try {
    const r = await c.request({ op: 'ping' }).catch(() => c.receive());
    return r === null ? 'closed' : r.ok ? 'ok' : r.error.code;
  } finally {
    c.close();
  }
}

interface Registrations { replies: Reply[]; release(): Promise<void> }

/** Runs hold-registrations as a user: one socket per label, registered and kept until release(). */
function holdRegistrations(user: keyof typeof users, socket: string, labels: string[]): Promise<Registrations> {
  const [cmd, args] = asUser(user, [process.execPath, asOther.helper('hold-registrations'), socket, ...labels]);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const release = async (): Promise<void> => { child.stdin!.end(); await exited; };
  return new Promise((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const lines = out.split('\n').slice(0, -1);
      if (lines.length === labels.length) ok({ replies: lines.map((l) => JSON.parse(l) as Reply), release });
    });
    child.once('exit', (code) => fail(new Error(`hold-registrations exited early (${code}): ${out}`)));
  });
}

const code = (r: Reply): string => (r.ok ? 'ok' : r.error.code);

let d: Dispatcher;
before(() => {
  addAccounts(dir, Object.entries(users).map(([name, uid]) => ({ name, uid, gid: CLIENTS })),
    [{ name: 'tlclients', gid: CLIENTS, members: Object.keys(users) }]);
  d = Dispatcher.create({ bpffs });
});
after(() => {
  d.close();
  Dispatcher.unload({ bpffs });
});

describe('connections per user', () => {
  test('one member holding 64 idle connections gets 8; root and the other members are still served', async () => {
    const socket = path.join(dir, 'defaults.sock');
    const daemon = await startDaemon({ bpffs, socket, args: ['--group', 'tlclients', '--idle-timeout', '60'] });
    const held: Held[] = [];
    try {
      const greedy = await hold('tlalice', socket, 64);
      held.push(greedy);
      assert.equal(greedy.served, 8);
      assert.equal(greedy.refused.length, 56);
      assert.ok(greedy.refused.every((r) => r.code === 'EBUSY'));
      assert.match(greedy.refused[0].message, new RegExp(`uid ${users.tlalice} already has 8 connections.*--max-clients-per-user`));
      await daemon.waitLog(new RegExp(`uid=${users.tlalice} refused: uid ${users.tlalice} already has 8 connections`));
      assert.equal(await rootPing(socket), 'ok');
      const other = await hold('tlbob', socket, 3);
      held.push(other);
      assert.equal(other.served, 3);
    } finally {
      for (const h of held) await h.release();
      await daemon.stop();
    }
  });

  test('the last --root-clients connections are root\'s alone', async () => {
    const socket = path.join(dir, 'small.sock');
    const daemon = await startDaemon({ bpffs, socket, args: ['--group', 'tlclients', '--idle-timeout', '60',
      '--max-clients', '10', '--root-clients', '4', '--max-clients-per-user', '3'] });
    const held: Held[] = [];
    const rootHeld: HandoffClient[] = [];
    try {
      held.push(await hold('tlalice', socket, 3), await hold('tlbob', socket, 3));
      const late = await hold('tlcarol', socket, 1);
      held.push(late);
      assert.equal(late.served, 0);
      assert.equal(late.refused[0].code, 'EBUSY');
      assert.match(late.refused[0].message, /the last 4 of 10 connections are kept for root/);
      for (let i = 0; i < 4; i++) {
        const c = HandoffClient.connect(socket);
        rootHeld.push(c);
        assert.equal((await c.request({ op: 'ping' })).ok, true);
      }
      assert.equal(await rootPing(socket), 'EBUSY'); // 10 of 10: full for root too
    } finally {
      for (const c of rootHeld) c.close();
      for (const h of held) await h.release();
      await daemon.stop();
    }
  });

  test('--root-clients must leave room for others', async () => {
    const bad = await startDaemon({ bpffs, socket: path.join(dir, 'bad.sock'), args: ['--max-clients', '4', '--root-clients', '4'], ready: null });
    assert.equal(await bad.exited, 1);
    assert.match(bad.log(), /--root-clients 4 leaves no connection of --max-clients 4 for other users/);
  });
});

describe('destinations per user', () => {
  const socket = path.join(dir, 'quota.sock');
  const policyFile = path.join(dir, 'policy.json');

  test('a user registers up to --max-destinations-per-user, then gets EDQUOT; others and root go on', async () => {
    writeFileSync(policyFile, JSON.stringify({ allow: [{ group: 'tlclients', labels: ['q-*'] }] }));
    const daemon = await startDaemon({ bpffs, socket, args: ['--policy', policyFile, '--group', 'tlclients', '--max-destinations-per-user', '3'] });
    const root = await tcpServer('q-root', '127.0.0.1');
    const held: Registrations[] = [];
    try {
      const alice = await holdRegistrations('tlalice', socket, ['q-1', 'q-2', 'q-3', 'q-4', 'q-1']);
      held.push(alice);
      // the 5th replaces q-1's socket: at the limit, replacing is fine
      assert.deepEqual(alice.replies.map(code), ['ok', 'ok', 'ok', 'EDQUOT', 'ok']);
      const refusal = alice.replies[3];
      assert.match(!refusal.ok ? refusal.error.message : '',
        new RegExp(`uid ${users.tlalice} holds 3 registered destinations, may hold 3 \\(--max-destinations-per-user\\), and this request adds 1`));
      await daemon.waitLog(new RegExp(`uid=${users.tlalice} op=register label="q-4" result=EDQUOT`));
      const owned = d.destinations().filter((x) => x.sockets.length > 0).map((x) => [x.label, x.owner]);
      assert.deepEqual(owned, [['q-1', users.tlalice], ['q-2', users.tlalice], ['q-3', users.tlalice]]);

      // another user has a limit of its own
      const bob = await holdRegistrations('tlbob', socket, ['q-5']);
      held.push(bob);
      assert.deepEqual(bob.replies.map(code), ['ok']);

      // root registers and binds as it likes, and traffic follows
      await registerSockets('q-root', [root.fd], { socketPath: socket });
      d.bind(parseBinding({ label: 'q-root', protocol: 'tcp', prefix: '127.0.7.1', port: 80 }));
      d.bind(parseBinding({ label: 'q-2', protocol: 'tcp', prefix: '127.0.7.2', port: 80 }));
      assert.equal(await tcpProbe('127.0.7.1', 80), 'q-root');
      assert.equal(await tcpProbe('127.0.7.2', 80), 'q-2');
      assert.equal(d.destinations().find((x) => x.label === 'q-root')!.owner, 0);

      // her sockets closed, her registrations are gone and so is her count
      await alice.release();
      held.shift();
      assert.equal(await tcpProbe('127.0.7.2', 80), 'ECONNREFUSED');
      const again = await holdRegistrations('tlalice', socket, ['q-4']);
      held.push(again);
      assert.deepEqual(again.replies.map(code), ['ok']);
    } finally {
      for (const h of held) await h.release();
      await root.close();
      await daemon.stop();
    }
  });
});
