// One request in, one reply out. The fds that came with the request are the
// handler's to close, on every path: the dispatcher keeps its own reference
// to a registered socket in the pinned socket map.
import { TubularError } from '../errors.js';
import { labelProblem } from '../label.js';
import { native, type ReceivedMessage } from '../native.js';
import type { Domain, Protocol } from '../protocol.js';
import { registrableKind, socketProblem } from '../socket.js';
import { allows, type Peer, type Policy } from './policy.js';
import type { DispatcherHandle } from './state.js';
import {
  type ListedDestination, MAX_FDS, MAX_REQUEST_BYTES, OPS, type Op, type RegisteredSocket, type Reply, REQUESTS, RequestError,
} from './wire.js';

export interface HandlerContext {
  dispatcher: DispatcherHandle;
  policy: () => Policy;
  version: string;
}

export interface Handled {
  reply: Reply;
  /** for the log line */
  op: string;
  label?: string;
  result: string;
}

/** What is wrong with a socket, as a distinct code, before the dispatcher sees it. */
function checkSocket(fd: number, index: number): { domain: Domain; protocol: Protocol; address: string; port: number } {
  const n = native();
  const which = `socket #${index + 1}`;
  if (n.socketType(fd) < 0) throw new RequestError('ENOTSOCK', `${which} is not a socket: attach the fds of listening TCP or bound UDP sockets`);
  const info = n.socketInfo(fd);
  const problem = socketProblem(info);
  if (problem) throw new RequestError(problem.code, `${which} is ${problem.message}`);
  return { ...registrableKind(info), address: info.address, port: info.port };
}

/** Maps a dispatcher failure to a reply code. */
function dispatcherError(err: unknown): RequestError {
  if (err instanceof RequestError) return err;
  if (err instanceof TubularError) {
    const code = err.code === 'ENOENT' || err.code === 'ENOSPC' || err.code === 'EPERM' || err.code === 'ENOTLOADED' ? err.code : 'EIO';
    return new RequestError(code, err.message);
  }
  return new RequestError('EIO', `the dispatcher failed: ${(err as Error).message}`);
}

function checkLabel(label: string): void {
  const problem = labelProblem(label);
  if (problem) throw new RequestError('EBADLABEL', problem);
}

function checkPolicy(ctx: HandlerContext, peer: Peer, op: string, label: string): void {
  if (!allows(ctx.policy(), peer, label)) {
    throw new RequestError('EPERM', `uid ${peer.uid} may not ${op} label "${label}": ` +
      (ctx.policy().rules.length ? 'the policy file grants it no pattern matching this label' : 'only root may, unless a policy file (--policy) grants it'));
  }
}

/** Parses the payload into a request of a known op, with a code for each way it can be wrong. */
function parse(data: Buffer): { op: Op; request: Record<string, unknown> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    throw new RequestError('EBADMSG', `the request is not UTF-8 JSON (${(err as Error).message}): send one JSON object such as {"op":"ping"}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new RequestError('EBADMSG', 'the request is not a JSON object: send one such as {"op":"ping"}');
  }
  const obj = json as Record<string, unknown>;
  if (!('op' in obj)) throw new RequestError('EINVAL', `the request has no "op": use one of ${OPS.join(', ')}`);
  if (typeof obj.op !== 'string' || !OPS.includes(obj.op as Op)) {
    throw new RequestError('EOPNOTSUPP', `unknown op ${JSON.stringify(obj.op)}: use one of ${OPS.join(', ')}`);
  }
  const op = obj.op as Op;
  const r = REQUESTS[op].safeParse(obj);
  if (!r.success) {
    const issue = r.error.issues[0];
    const keys = (issue as { keys?: string[] }).keys;
    const field = keys?.length ? keys.join(', ') : issue.path.join('.');
    const detail = issue.code === 'unrecognized_keys' ? `unknown field ${field}` : `field "${field}": ${issue.message}`;
    throw new RequestError('EINVAL', `bad ${op} request, ${detail}: ${usage(op)}`);
  }
  return { op, request: r.data as Record<string, unknown> };
}

const usage = (op: Op): string => ({
  ping: 'send {"op":"ping"}',
  list: 'send {"op":"list"}',
  register: 'send {"op":"register","label":"NAME"} with the sockets attached',
  unregister: 'send {"op":"unregister","label":"NAME","domain":"ipv4|ipv6","protocol":"tcp|udp"}',
}[op]);

function register(ctx: HandlerContext, peer: Peer, label: string, fds: number[]): RegisteredSocket[] {
  checkLabel(label);
  checkPolicy(ctx, peer, 'register', label);
  // Validate every socket before touching the dispatcher.
  const kinds = fds.map(checkSocket);
  const seen = new Set<string>();
  for (const k of kinds) {
    const key = `${k.domain}/${k.protocol}`;
    if (seen.has(key)) throw new RequestError('EDUPLICATE', `two sockets go to ${label} ${k.domain} ${k.protocol}: send one socket per domain and protocol`);
    seen.add(key);
  }
  let d;
  try {
    d = ctx.dispatcher.get();
  } catch (err) {
    throw dispatcherError(err);
  }
  const done: { index: number; replaced: bigint | null; cookie: bigint }[] = [];
  try {
    // Empty destinations first: if one fails (say, no room for a new one),
    // no socket has been replaced yet and the rollback is complete.
    const held = new Set(d.destinations().filter((x) => x.label === label && x.socket !== null).map((x) => `${x.domain}/${x.protocol}`));
    const replaces = (i: number): number => Number(held.has(`${kinds[i].domain}/${kinds[i].protocol}`));
    const order = fds.map((_, i) => i).sort((a, b) => replaces(a) - replaces(b));
    for (const i of order) {
      const r = d.registerSocket(label, fds[i]);
      done.push({ index: i, replaced: r.replaced, cookie: r.cookie });
    }
  } catch (err) {
    // Roll back: empty again the slots that were empty. A socket that was
    // replaced cannot be put back (the daemon never held its fd): say so.
    const lost: string[] = [];
    for (const r of done.reverse()) {
      const k = kinds[r.index];
      if (r.replaced === null) {
        try { d.unregisterSocket({ label, domain: k.domain, protocol: k.protocol }); } catch { lost.push(`${k.domain}/${k.protocol}`); }
      } else {
        lost.push(`${k.domain}/${k.protocol}`);
      }
    }
    const e = dispatcherError(err);
    const note = lost.length ? ` (${label} ${lost.join(', ')} could not be rolled back and now holds the new socket)` : '';
    throw new RequestError(e.code, `${e.message}${note}`);
  }
  return done.sort((a, b) => a.index - b.index).map((r) => ({
    label,
    domain: kinds[r.index].domain,
    protocol: kinds[r.index].protocol,
    address: kinds[r.index].address,
    port: kinds[r.index].port,
    cookie: r.cookie.toString(),
    replaced: r.replaced === null ? null : r.replaced.toString(),
  }));
}

function unregister(ctx: HandlerContext, peer: Peer, label: string, domain: Domain, protocol: Protocol): void {
  checkLabel(label);
  checkPolicy(ctx, peer, 'unregister', label);
  try {
    ctx.dispatcher.get().unregisterSocket({ label, domain, protocol });
  } catch (err) {
    throw dispatcherError(err);
  }
}

function list(ctx: HandlerContext): ListedDestination[] {
  try {
    return ctx.dispatcher.get().destinations().map((x) => ({
      label: x.label,
      domain: x.domain,
      protocol: x.protocol,
      registered: x.socket !== null,
      cookie: x.socket === null ? null : x.socket.toString(),
      bindings: x.bindings,
      lookups: Number(x.lookups),
      misses: Number(x.misses),
      errors: Number(x.errors),
    }));
  } catch (err) {
    throw dispatcherError(err);
  }
}

function dispatch(ctx: HandlerContext, msg: ReceivedMessage, peer: Peer, out: Partial<Handled>): Reply {
  if (msg.truncated) throw new RequestError('EMSGSIZE', `the request is larger than ${MAX_REQUEST_BYTES} bytes: send a smaller one`);
  if (msg.fds.length > MAX_FDS) throw new RequestError('E2BIG', `more than ${MAX_FDS} fds attached: send at most ${MAX_FDS} sockets per request`);
  if (msg.ctrlTruncated) {
    throw new RequestError('ECTRUNC', 'the control message was truncated and fds were lost (the daemon may be out of fds): try again, with fewer fds');
  }
  const { op, request } = parse(msg.data);
  out.op = op;
  if (typeof request.label === 'string') out.label = request.label;
  if (op !== 'register' && msg.fds.length > 0) {
    throw new RequestError('EUNEXPECTEDFDS', `op ${op} takes no fds but ${msg.fds.length} came with it: attach fds to register only`);
  }
  switch (op) {
    case 'ping':
      return { ok: true, version: ctx.version };
    case 'list':
      return { ok: true, destinations: list(ctx) };
    case 'register':
      if (msg.fds.length === 0) throw new RequestError('ENOFDS', 'register needs the sockets attached as SCM_RIGHTS fds (1 to 16)');
      return { ok: true, registered: register(ctx, peer, request.label as string, msg.fds) };
    case 'unregister':
      unregister(ctx, peer, request.label as string, request.domain as Domain, request.protocol as Protocol);
      return { ok: true };
  }
}

/** Handles one received message. Never throws; closes every fd that came with it. */
export function handle(ctx: HandlerContext, msg: ReceivedMessage, peer: Peer): Handled {
  const out: Partial<Handled> = { op: '?' };
  try {
    const reply = dispatch(ctx, msg, peer, out);
    const registered = 'registered' in reply ? ` ${reply.registered.map((r) => `${r.domain}/${r.protocol}`).join(',')}` : '';
    return { op: out.op!, label: out.label, reply, result: `ok${registered}` };
  } catch (err) {
    const e = err instanceof RequestError ? err : new RequestError('EIO', `internal error: ${(err as Error).message}`);
    return { op: out.op!, label: out.label, reply: { ok: false, error: { code: e.code, message: e.message } }, result: `${e.code}: ${e.message}` };
  } finally {
    const n = native();
    for (const fd of msg.fds) {
      try { n.close(fd); } catch { /* already gone: nothing to leak */ }
    }
  }
}
