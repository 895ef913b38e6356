// tubectl explain <tcp|udp> <address> <port>: where a connection goes and
// why, from the maps; then the loaded program is asked the same question
// (BPF_PROG_TEST_RUN), and a different answer is reported loudly, with
// exit status 1: that is a bug report in itself.
import { release } from 'node:os';
import path from 'node:path';
import { toJSON } from '../binding.js';
import type { Dispatcher } from '../dispatcher.js';
import { TubularError, context, isSystemError } from '../errors.js';
import { type Explanation, type Lookup, type Verdict, agrees, describe, explainLookup, verdictText } from '../explain.js';
import { TEST_RUN_SINCE } from '../kernel.js';
import { PIN } from '../layout.js';
import { native } from '../native.js';
import { netnsInode } from '../netns.js';
import { formatAddress, parsePrefix } from '../prefix.js';
import { probe } from '../probe.js';
import { parsePort, parseProtocol } from '../protocol.js';
import { quote } from '../quote.js';
import { type OwnerSearch, findSocketOwners, listeningInodes } from '../socket-owner.js';
import { type Env, openDispatcher } from './env.js';
import { EXIT_FAILED, ExitStatus, UsageError, parsing } from './errors.js';
import { writeJSON } from './output.js';

/** Reads `<tcp|udp> <address> <port>` strictly: an address without zone or length, a port of digits. */
export function parseLookup(protocol: string, address: string, port: string): Lookup {
  const bad = (message: string): UsageError => new UsageError(message, 'explain');
  const p = parsing('explain', () => parseProtocol(protocol));
  if (address.includes('%')) throw bad(`invalid address ${quote(address)}: give it without a zone (%...): bindings match addresses, not interfaces`);
  if (address.includes('/')) throw bad(`invalid address ${quote(address)}: give one address, not a prefix`);
  if (address === '' || address.trim() !== address) throw bad(`invalid address ${quote(address)}: expected an IPv4 or IPv6 address`);
  const { prefix } = parsing('explain', () => parsePrefix(address));
  const n = parsing('explain', () => parsePort(port));
  return { protocol: p, family: prefix.family, address: prefix.bytes, port: n };
}

const ATTEMPTS = 3;

interface Answer {
  explanation: Explanation;
  program: Verdict;
}

/** The error for a kernel that cannot run an sk_lookup program on a made-up connection; undefined for any other failure. */
export function testRunRefusal(err: unknown, kernel: string): TubularError | undefined {
  if (!isSystemError(err, 'ENOTSUPP')) return undefined;
  return new TubularError('EINCOMPAT', `this kernel (${kernel}) cannot run an sk_lookup program on a made-up connection (BPF_PROG_TEST_RUN), ` +
    `which explain asks the loaded program: that needs ${TEST_RUN_SINCE}; tubectl bindings any ADDRESS PORT lists the bindings that match`, { cause: err });
}

/** Runs the program on the lookup; a socket of an SO_REUSEPORT group makes BPF_PROG_TEST_RUN fail with EOPNOTSUPP. */
function askProgram(progFd: number, q: Lookup): Verdict {
  try {
    const r = probe(progFd, q, 1, { quiet: true }); // answered, not counted as a hit
    return { verdict: r.verdict, cookie: r.cookie === 0n ? null : r.cookie };
  } catch (err) {
    if (isSystemError(err, 'EOPNOTSUPP')) return { verdict: 'pass', cookie: null, reuseport: true };
    throw testRunRefusal(err, release()) ?? err;
  }
}

/**
 * Reads the maps, asks the program, reads the maps again: a change made
 * in between (another tubectl, a socket closing) is not a disagreement,
 * so the question is asked again.
 */
function ask(d: Dispatcher, progFd: number, q: Lookup): Answer {
  const read = (): Explanation => explainLookup(d.packedBindings(), d.destinations(), q);
  const same = (a: Explanation, b: Explanation): boolean =>
    a.summary === b.summary && a.expected.verdict === b.expected.verdict && a.expected.cookie === b.expected.cookie;
  const once = (): { answer: Answer; settled: boolean } => {
    const before = read();
    const program = askProgram(progFd, q);
    const after = read();
    return { answer: { explanation: after, program }, settled: same(before, after) && agrees(after.expected, program) };
  };
  // A stable disagreement is asked again all the same, in case a socket closed right then.
  let last = once();
  for (let attempt = 1; attempt < ATTEMPTS && !last.settled; attempt++) last = once();
  return last.answer;
}

function openProgram(d: Dispatcher): number {
  try {
    const pin = d.runningProgram() ?? path.join(d.stateDir, PIN.program);
    return context('open the loaded program', () => native().getPinned(pin, 0));
  } catch (err) {
    if (!(err instanceof TubularError && err.code === 'EPERM')) throw err;
    throw new TubularError('EPERM', 'explain asks the loaded program the same question (BPF_PROG_TEST_RUN), and only root may open it: run tubectl explain as root', { cause: err });
  }
}

const addressText = (q: Lookup): string => formatAddress(q.family, q.address);

export async function explain(env: Env, protocol: string, address: string, port: string): Promise<void> {
  const q = parseLookup(protocol, address, port);
  // Not withDispatcher: its advice for a refused read (join the group)
  // would be wrong for the program, which only root may open.
  const d = await openDispatcher(env, true);
  let answer: Answer;
  let owners: OwnerSearch | undefined;
  try {
    const progFd = openProgram(d);
    try {
      answer = ask(d, progFd, q);
    } finally {
      native().close(progFd);
    }
    const sockets = answer.explanation.destination?.sockets ?? [];
    const sameNetns = netnsInode('/proc/self/ns/net') === d.netnsInode;
    if (sockets.length > 0) owners = findSocketOwners(sockets, sameNetns ? listeningInodes() : undefined);
  } finally {
    d.close();
  }
  const { explanation: e, program } = answer;
  const ok = agrees(e.expected, program);
  if (env.json) writeJSON(env, explainJSON(q, e, program, ok, owners));
  else env.stdout.write(explainText(q, e, program, ok, owners));
  if (!ok) {
    env.stderr.write(`tubectl: DISAGREEMENT: for ${q.protocol} ${addressText(q)} port ${q.port} the maps call for ${verdictText(e.expected)}, ` +
      `but the loaded program answered ${verdictText(program)}. This is a bug in tubular: please report it with this output, ` +
      '`tubectl bindings --json` and `tubectl status --json`.\n');
    throw new ExitStatus(EXIT_FAILED);
  }
}

function ownersText(cookie: bigint, owners: OwnerSearch | undefined): string {
  const list = owners?.owners.get(cookie) ?? [];
  if (list.length > 0) return list.map((o) => `process ${o.pid} (${o.command}) fd ${o.fd}`).join(', ');
  return owners?.complete ? 'held by no process we can see' : 'owning process not found (the search stopped at its bound of time or sockets)';
}

export function explainText(q: Lookup, e: Explanation, program: Verdict, ok: boolean, owners: OwnerSearch | undefined): string {
  let out = `${q.protocol} ${addressText(q)} port ${q.port}: ${e.summary}\n`;
  if (e.matches.length > 0) {
    out += '\nMatching bindings, most preferred first:\n';
    const width = Math.max(...e.matches.map((m) => describe(m.binding).length));
    for (const m of e.matches) out += `  ${describe(m.binding).padEnd(width)}  ${m.reason}\n`;
  }
  const d = e.destination;
  if (d) {
    out += `\nDestination ${d.label} ${d.domain} ${d.protocol}: `;
    if (d.sockets.length === 0) {
      out += `no socket registered (tubectl register-pid PID ${d.label} ${d.protocol} ADDRESS PORT registers one)\n`;
    } else {
      out += `${d.sockets.length === 1 ? '1 socket' : `${d.sockets.length} sockets (one SO_REUSEPORT group)`}\n`;
      for (const c of d.sockets) out += `  socket ${c}: ${ownersText(c, owners)}\n`;
    }
  }
  out += `\nThe loaded program (BPF_PROG_TEST_RUN): ${verdictText(program)}`;
  out += ok ? ', as the maps say\n' : `\nDISAGREEMENT: the maps call for ${verdictText(e.expected)}\n`;
  return out;
}

const verdictJSON = (v: Verdict) => ({ verdict: v.verdict, cookie: v.cookie === null ? null : v.cookie.toString(), reuseport: v.reuseport ?? false });

export function explainJSON(q: Lookup, e: Explanation, program: Verdict, ok: boolean, owners: OwnerSearch | undefined) {
  const d = e.destination;
  return {
    protocol: q.protocol, address: addressText(q), port: q.port,
    binding: e.matches.length > 0 ? toJSON(e.matches[0].binding) : null,
    summary: e.summary,
    matches: e.matches.map((m, n) => ({ binding: toJSON(m.binding), wins: n === 0, reason: m.reason })),
    destination: d && {
      label: d.label, domain: d.domain, protocol: d.protocol,
      sockets: d.sockets.map((c) => ({ cookie: c.toString(), owners: (owners?.owners.get(c) ?? []).map((o) => ({ ...o })) })),
      ownersComplete: owners?.complete ?? true,
    },
    expected: verdictJSON(e.expected),
    program: verdictJSON(program),
    agrees: ok,
  };
}
