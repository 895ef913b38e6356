// A registration lasts while its socket is open, and a service with an
// SO_REUSEPORT group registers the group: connections spread over the
// members, closing one never refuses connections while a sibling listens,
// and once the last is closed connections are refused and counted as misses.
// Real traffic on loopback; the service is Python (Node 20 cannot set
// SO_REUSEPORT).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { tcpProbe } from './lib/traffic.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { parseBinding } from '../src/binding.js';
import { type Reply, listDestinations } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const dir = workDir();
const socket = path.join(dir, 'tubulard.sock');
const tubectl = tubectlFor(bpffs);

// COUNT listening TCP sockets on one port with SO_REUSEPORT, registered
// under LABEL in one request; prints the reply, then serves: member N
// answers "member-N". A line "N" on stdin closes member N.
const GROUP_SERVICE = `
import json, select, socket, sys
path, label, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
members, port = {}, 0
for n in range(1, count + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    port = s.getsockname()[1]
    s.listen(64)
    members[n] = s
c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
c.connect(path)
socket.send_fds(c, [json.dumps({"op": "register", "label": label}).encode()], [s.fileno() for s in members.values()])
print(c.recv(65536).decode(), flush=True)
c.close()
while True:
    ready, _, _ = select.select([sys.stdin] + list(members.values()), [], [])
    if sys.stdin in ready:
        line = sys.stdin.readline()
        if not line:
            break
        members.pop(int(line)).close()
        print(json.dumps({"closed": int(line)}), flush=True)
        continue
    for n, s in members.items():
        if s in ready:
            conn, _ = s.accept()
            conn.sendall(f"member-{n}".encode())
            conn.close()
`;

interface Group { child: ChildProcess; reply: Reply; close(member: number): Promise<void>; stop(): Promise<void> }

async function startGroup(label: string, count: number): Promise<Group> {
  const child = spawn('python3', ['-c', GROUP_SERVICE, socket, label, String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const waiters: { re: RegExp; ok: (line: string) => void }[] = [];
  const check = (): void => {
    const lines = out.split('\n').slice(0, -1);
    for (const w of [...waiters]) {
      const l = lines.find((x) => w.re.test(x));
      if (l !== undefined) { waiters.splice(waiters.indexOf(w), 1); w.ok(l); }
    }
  };
  child.stdout!.on('data', (d) => { out += d; check(); });
  const line = (re: RegExp): Promise<string> => new Promise((ok, fail) => {
    waiters.push({ re, ok });
    check();
    child.once('exit', (code) => fail(new Error(`the group service exited (${code}): ${out}`)));
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  const reply = JSON.parse(await line(/"ok"/)) as Reply;
  return {
    child,
    reply,
    close: async (member) => {
      child.stdin!.write(`${member}\n`);
      await line(new RegExp(`"closed": ${member}`));
    },
    stop: async () => { child.stdin!.end(); await exited; },
  };
}

let probes = 0;
/**
 * Connects `times` times to distinct addresses of 127.0.9.0/24, each time from
 * a source address of its own (a refusal then counts once); how often each
 * answer came.
 */
async function probe(times: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 1; i <= times; i++) {
    const answer = await tcpProbe(`127.0.9.${i}`, 80, `127.58.${Math.floor(++probes / 250)}.${(probes % 250) + 1}`);
    seen[answer] = (seen[answer] ?? 0) + 1;
  }
  return seen;
}

describe('SO_REUSEPORT groups', () => {
  let d: Dispatcher;
  let daemon: Daemon;

  before(async () => {
    d = Dispatcher.create({ bpffs });
    d.bind(parseBinding({ label: 'group', protocol: 'tcp', prefix: '127.0.9.0/24', port: 80 }));
    daemon = await startDaemon({ bpffs, socket });
  });
  after(async () => {
    await daemon.stop();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('a group registered whole serves while any member listens; the last one closed, connections are refused and counted', async () => {
    const group = await startGroup('group', 2);
    try {
      assert.ok(group.reply.ok && 'registered' in group.reply, JSON.stringify(group.reply));
      const reg = group.reply.registered;
      assert.equal(reg.length, 2);
      assert.equal(reg[0].port, reg[1].port);
      assert.notEqual(reg[0].cookie, reg[1].cookie);
      const [listed] = await listDestinations({ socketPath: socket });
      assert.deepEqual(listed.cookies, reg.map((r) => r.cookie));

      // the kernel's reuseport selection spreads connections over the group
      const both = await probe(40);
      assert.deepEqual(Object.keys(both).sort(), ['member-1', 'member-2'], JSON.stringify(both));

      await group.close(1);
      assert.deepEqual(await probe(20), { 'member-2': 20 });
      const [afterOne] = await listDestinations({ socketPath: socket });
      assert.deepEqual(afterOne.cookies, [reg[1].cookie]);
      assert.equal(afterOne.misses, 0);

      await group.close(2);
      assert.deepEqual(await probe(10), { ECONNREFUSED: 10 });
      const [none] = await listDestinations({ socketPath: socket });
      assert.equal(none.registered, false);
      assert.equal(none.misses, 10);
      const status = JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { destinations: { label: string; misses: string }[] };
      assert.equal(status.destinations.find((x) => x.label === 'group')?.misses, '10');
    } finally {
      await group.stop();
    }
  });

  test('the registration ends when the service exits: the daemon keeps no copy of its sockets', async () => {
    const group = await startGroup('group', 3);
    try {
      assert.equal(group.reply.ok, true);
      assert.equal((await listDestinations({ socketPath: socket }))[0].cookies.length, 3);
      const seen = await probe(30);
      assert.ok(Object.keys(seen).every((k) => /^member-[123]$/.test(k)), JSON.stringify(seen));
    } finally {
      await group.stop();
    }
    // the service exited: its sockets are closed, and so is the registration
    assert.deepEqual(await probe(3), { ECONNREFUSED: 3 });
    assert.equal((await listDestinations({ socketPath: socket }))[0].registered, false);
  });

  test('at most 8 members go to one destination: E2BIG, and nothing changes', async () => {
    const before = d.destinations();
    const group = await startGroup('big', 9);
    try {
      assert.equal(!group.reply.ok && group.reply.error.code, 'E2BIG', JSON.stringify(group.reply));
      assert.match(!group.reply.ok ? group.reply.error.message : '', /more than 8 sockets go to big ipv4 tcp/);
    } finally {
      await group.stop();
    }
    assert.deepEqual(d.destinations(), before);
  });
});
