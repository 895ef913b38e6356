// One request in, one reply out. The fds that came with the request are the
// handler's to close, on every path, once the request is answered: a
// registered socket stays registered while some process holds it open
// (the service that sent it), never because the daemon keeps a copy.
import { labelProblem } from '../label.js';
import { native, type ReceivedMessage } from '../native.js';
import type { Domain, Protocol } from '../protocol.js';
import { type HandlerContext, dispatcherError, dispatcherOf } from './context.js';
import { lockWait, whenUnlocked } from './lock-wait.js';
import { allows, type Peer } from './policy.js';
import { register } from './register.js';
import {
  type ListedDestination, MAX_FDS, MAX_REQUEST_BYTES, OPS, type Op, type Reply, REQUESTS, RequestError,
} from './wire.js';

export type { HandlerContext } from './context.js';

export interface Handled {
  reply: Reply;
  /** for the log line */
  op: string;
  label?: string;
  result: string;
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

async function unregister(ctx: HandlerContext, peer: Peer, label: string, domain: Domain, protocol: Protocol): Promise<void> {
  checkLabel(label);
  checkPolicy(ctx, peer, 'unregister', label);
  try {
    await whenUnlocked(() => ctx.writes.run((d) => d.unregisterSocket({ label, domain, protocol })), lockWait(ctx.lockTimeoutMs));
  } catch (err) {
    throw dispatcherError(err);
  }
}

/** Reads without the lock: never waits for a writer. */
function list(ctx: HandlerContext): ListedDestination[] {
  try {
    return dispatcherOf(ctx).destinations().map((x) => ({
      label: x.label,
      domain: x.domain,
      protocol: x.protocol,
      registered: x.socket !== null,
      cookie: x.socket === null ? null : x.socket.toString(),
      cookies: x.sockets.map(String),
      owner: x.owner,
      bindings: x.bindings,
      lookups: Number(x.lookups),
      misses: Number(x.misses),
      errors: Number(x.errors),
    }));
  } catch (err) {
    throw dispatcherError(err);
  }
}

async function dispatch(ctx: HandlerContext, msg: ReceivedMessage, peer: Peer, out: Partial<Handled>): Promise<Reply> {
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
    case 'register': {
      if (msg.fds.length === 0) throw new RequestError('ENOFDS', `register needs the sockets attached as SCM_RIGHTS fds (1 to ${MAX_FDS})`);
      const label = request.label as string;
      checkLabel(label);
      checkPolicy(ctx, peer, 'register', label);
      return { ok: true, registered: await register(ctx, peer, label, msg.fds) };
    }
    case 'unregister':
      await unregister(ctx, peer, request.label as string, request.domain as Domain, request.protocol as Protocol);
      return { ok: true };
  }
}

/**
 * Handles one received message: resolves to the reply (never rejects), and
 * closes every fd that came with it. A write waits for the writers' lock
 * on timers, so the promise may take up to --lock-timeout.
 */
export async function handle(ctx: HandlerContext, msg: ReceivedMessage, peer: Peer): Promise<Handled> {
  const out: Partial<Handled> = { op: '?' };
  try {
    const reply = await dispatch(ctx, msg, peer, out);
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
