// Who may register what: root always, others as a policy file says, by user
// or group, primary or supplementary. The users and groups exist only in this
// test's mount namespace (private copies of /etc/passwd and /etc/group).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SYSTEM_PYTHON, addAccounts, asUser } from './lib/accounts.js';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { installed } from './lib/installed.js';
import type { Reply } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const asOther = installed(); // the accounts may not be able to read the checkout
const dir = workDir();
chmodSync(dir, 0o755);
const socket = path.join(dir, 'tubulard.sock');
const policyFile = path.join(dir, 'policy.json');

// Throwaway accounts, visible only in this mount namespace.
const CLIENTS = 64100; // may connect to the socket
const WEB = 64101;     // the policy's group
const users = { tbalice: 64001, tbbob: 64002, tbcarol: 64003 };
function addTestAccounts(): void {
  addAccounts(dir, [
    { name: 'tbalice', uid: users.tbalice, gid: CLIENTS },
    { name: 'tbbob', uid: users.tbbob, gid: CLIENTS },
    { name: 'tbcarol', uid: users.tbcarol, gid: WEB },
  ], [
    { name: 'tbclients', gid: CLIENTS, members: ['tbalice', 'tbbob', 'tbcarol'] },
    { name: 'tbweb', gid: WEB, members: ['tbalice'] },
  ]);
}

/** Runs the register-as helper as a user; returns its replies. */
function as(user: keyof typeof users, label: string, then?: 'unregister', sock = socket): Reply[] {
  const out = execFileSync(...asUser(user, [process.execPath, asOther.helper('register-as'), sock, label, ...(then ? [then] : [])]), { encoding: 'utf8' });
  return out.trim().split('\n').map((l) => JSON.parse(l) as Reply);
}
const code = (r: Reply): string => (r.ok ? 'ok' : r.error.code);

// Connects, then hands the connection to a child and exits: the pid the
// daemon saw at connect() is gone (and could be anyone's) when the child
// sends its request. Prints the reply.
const ORPHANED_CLIENT = `
import os, socket, sys, time
path, label = sys.argv[1:3]
c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
c.connect(path)
parent = os.getpid()
if os.fork() > 0:
    os._exit(0)
for _ in range(500):
    if not os.path.exists(f"/proc/{parent}"):
        break
    time.sleep(0.01)
else:
    sys.exit("the parent did not go away")
s = socket.create_server(("127.0.0.1", 0))
socket.send_fds(c, [f'{{"op":"register","label":"{label}"}}'.encode()], [s.fileno()])
print(c.recv(65536).decode(), flush=True)
`;

/** Runs ORPHANED_CLIENT as a user with its groups; returns the reply. */
function orphanedAs(user: keyof typeof users, label: string): Reply {
  const out = execFileSync(...asUser(user, [SYSTEM_PYTHON, '-c', ORPHANED_CLIENT, socket, label]), { encoding: 'utf8' });
  return JSON.parse(out) as Reply;
}

describe('policy', () => {
  let d: Dispatcher;
  let daemon: Daemon;

  before(async () => {
    addTestAccounts();
    d = Dispatcher.create({ bpffs });
    writeFileSync(policyFile, JSON.stringify({ allow: [{ group: 'tbweb', labels: ['web-*'] }] }));
    daemon = await startDaemon({ bpffs, socket, args: ['--policy', policyFile, '--group', 'tbclients'] });
  });
  after(async () => {
    await daemon.stop();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('the socket belongs to the --group, mode 0660', () => {
    const [mode, group] = execFileSync('stat', ['-c', '%a %G', socket], { encoding: 'utf8' }).trim().split(' ');
    assert.deepEqual([mode, group], ['660', 'tbclients']);
  });

  test('a supplementary member of the group may register and unregister web-* labels', async () => {
    const [reg, unreg] = as('tbalice', 'web-1', 'unregister');
    assert.equal(code(reg), 'ok');
    assert.equal(code(unreg), 'ok');
    await daemon.waitLog(new RegExp(`uid=${users.tbalice} op=register label="web-1" result=ok ipv4/tcp`));
  });

  test('groups are those of the connection, not of whoever holds its pid at request time', async () => {
    // tbalice is in tbweb only as a supplementary group, which /proc/<pid>
    // of an exited process cannot tell
    assert.equal(code(orphanedAs('tbalice', 'web-orphan')), 'ok');
    await daemon.waitLog(new RegExp(`uid=${users.tbalice} op=register label="web-orphan" result=ok`));
    assert.equal(code(orphanedAs('tbbob', 'web-orphan')), 'EPERM');
  });

  test('a primary member of the group may too', () => {
    assert.equal(code(as('tbcarol', 'web-2')[0]), 'ok');
  });

  test('the same member gets EPERM outside its patterns, and nothing changes', () => {
    const before = d.destinations();
    const [r] = as('tbalice', 'db');
    assert.equal(code(r), 'EPERM');
    assert.match((r as { error: { message: string } }).error.message, new RegExp(`uid ${users.tbalice} may not register label "db"`));
    assert.deepEqual(d.destinations(), before);
  });

  test('a user outside the group gets EPERM for every label, and nothing changes', async () => {
    const before = d.destinations();
    assert.equal(code(as('tbbob', 'web-1')[0]), 'EPERM');
    assert.equal(code(as('tbbob', 'db')[0]), 'EPERM');
    assert.deepEqual(d.destinations(), before);
    await daemon.waitLog(new RegExp(`uid=${users.tbbob} op=register label="db" result=EPERM`));
  });

  test('SIGHUP reloads the policy; an invalid file keeps the old one and says why', async () => {
    writeFileSync(policyFile, JSON.stringify({ allow: [{ group: 'tbweb', labels: ['web-*'] }, { user: 'tbbob', labels: ['db'] }, { user: users.tbcarol, labels: ['*'] }] }));
    daemon.child.kill('SIGHUP');
    await daemon.waitLog(/SIGHUP: reloaded policy .* \(3 rules\)/);
    assert.equal(code(as('tbbob', 'db')[0]), 'ok');
    assert.equal(code(as('tbbob', 'web-1')[0]), 'EPERM');
    assert.equal(code(as('tbcarol', 'anything')[0]), 'ok');

    writeFileSync(policyFile, JSON.stringify({ allow: [{ user: 'tbbob', labels: ['db'], extra: true }] }));
    daemon.child.kill('SIGHUP');
    await daemon.waitLog(/SIGHUP: kept the previous policy: .*invalid at allow\.0/);
    writeFileSync(policyFile, JSON.stringify({ allow: [{ group: 'no-such-group-here', labels: ['*'] }] }));
    daemon.child.kill('SIGHUP');
    await daemon.waitLog(/SIGHUP: kept the previous policy: unknown group "no-such-group-here"/);
    writeFileSync(policyFile, '{ not json');
    daemon.child.kill('SIGHUP');
    await daemon.waitLog(/SIGHUP: kept the previous policy: .*not valid JSON/);
    assert.equal(code(as('tbbob', 'db')[0]), 'ok');
  });

  test('without a policy file only root may register', async () => {
    const sock2 = path.join(dir, 'default.sock');
    const other = await startDaemon({ bpffs, socket: sock2, args: ['--group', String(CLIENTS)] });
    try {
      assert.equal(code(as('tbalice', 'web-1', undefined, sock2)[0]), 'EPERM');
      assert.match(other.log(), /policy: default \(root only\)/);
    } finally {
      await other.stop();
    }
  });

  test('an invalid policy file at start is an error that names the problem', async () => {
    writeFileSync(policyFile, JSON.stringify({ allow: [{ user: 'tbbob', labels: ['bad label'] }] }));
    const bad = await startDaemon({ bpffs, socket: path.join(dir, 'bad.sock'), args: ['--policy', policyFile], ready: null });
    assert.equal(await bad.exited, 1);
    assert.match(bad.log(), /policy file .* is invalid at allow\.0\.labels\.0: a label pattern/);
  });
});
