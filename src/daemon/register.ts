// register: the sockets of one request go to their destinations all or
// none. Each destination is one write of the dispatcher (one turn of the
// writers' lock), destinations without a socket first: if one fails, say
// for want of room, nothing has been replaced yet, and the destinations
// done are emptied again. A user other than root holds at most
// --max-destinations-per-user registered destinations, so no member of the
// socket's group can take the dispatcher's 4,096; each write checks that
// again under the lock. A request for one destination (the common case)
// reads nothing before its write: there is nothing to order, and the
// write's own check is the whole quota check.
import type { DestinationRegistration, Registration } from '../dispatcher.js';
import { type DestinationKey, destinationName } from '../destination.js';
import { type HandlerContext, dispatcherError, dispatcherOf } from './context.js';
import { type LockWait, lockWait, whenUnlocked } from './lock-wait.js';
import type { Peer } from './policy.js';
import { type CheckedSocket, type SocketGroup, checkSocket, groupSockets } from './sockets.js';
import { type RegisteredSocket, RequestError } from './wire.js';

/** How many registered destinations a user other than root may hold unless --max-destinations-per-user says otherwise. */
export const MAX_DESTINATIONS_PER_USER = 64;

interface Done { group: SocketGroup; registration: Registration }

const key = (label: string, d: Omit<DestinationKey, 'label'>): string => destinationName({ label, domain: d.domain, protocol: d.protocol });

/**
 * What the checks need: the peer's destinations and the label's, with
 * whether a socket is registered; no counters, no binding set.
 */
function registrations(ctx: HandlerContext, peer: Peer, label: string): DestinationRegistration[] {
  try {
    return dispatcherOf(ctx).registrations((d) => d.label === label || (peer.uid !== 0 && d.owner === peer.uid));
  } catch (err) {
    throw dispatcherError(err);
  }
}

/** Fails with EDQUOT when registering `groups` would give the peer more destinations than it may hold. */
function checkQuota(ctx: HandlerContext, peer: Peer, label: string, groups: readonly SocketGroup[], now: readonly DestinationRegistration[]): void {
  if (peer.uid === 0) return;
  const mine = new Set(now.filter((d) => d.owner === peer.uid && d.registered).map((d) => key(d.label, d)));
  const adding = groups.filter((g) => !mine.has(key(label, g))).length;
  const limit = ctx.maxDestinationsPerUser;
  if (adding > 0 && mine.size + adding > limit) {
    throw new RequestError('EDQUOT', `uid ${peer.uid} holds ${mine.size} registered destinations, may hold ${limit} ` +
      `(--max-destinations-per-user), and this request adds ${adding}: unregister some, or close their sockets, first`);
  }
}

/** Registers one group: a write retried while another writer holds the lock. */
function registerGroup(ctx: HandlerContext, peer: Peer, label: string, group: SocketGroup, sockets: readonly CheckedSocket[], wait: LockWait): Promise<Registration> {
  return whenUnlocked(() => ctx.writes.run((d) => {
    // Again at each write: other requests of the same user may have run in between.
    if (peer.uid !== 0) checkQuota(ctx, peer, label, [group], d.registrations((e) => e.owner === peer.uid));
    return d.registerSocket(label, group.members.map((m) => sockets[m].fd), { owner: peer.uid, infos: group.members.map((m) => sockets[m].info) });
  }), wait);
}

/** Empties again the destinations that were empty; returns those it could not put back. */
async function rollBack(ctx: HandlerContext, label: string, done: readonly Done[]): Promise<string[]> {
  const wait = lockWait(ctx.lockTimeoutMs);
  const lost: string[] = [];
  for (const { group, registration } of [...done].reverse()) {
    const where = `${group.domain}/${group.protocol}`;
    if (registration.replaced !== null) {
      lost.push(where); // the daemon never held the old socket: it cannot put it back
      continue;
    }
    try {
      await whenUnlocked(() => ctx.writes.run((d) => d.unregisterSocket({ label, domain: group.domain, protocol: group.protocol })), wait);
    } catch {
      lost.push(where);
    }
  }
  return lost;
}

/**
 * The groups of a request for several destinations, those without a socket
 * first, after a quota check of the whole request: it fails before any
 * destination changes.
 */
function inOrder(ctx: HandlerContext, peer: Peer, label: string, groups: readonly SocketGroup[]): SocketGroup[] {
  const now = registrations(ctx, peer, label);
  checkQuota(ctx, peer, label, groups, now);
  const held = new Set(now.filter((d) => d.label === label && d.registered).map((d) => key(label, d)));
  const replaces = (g: SocketGroup): number => Number(held.has(key(label, g)));
  return [...groups].sort((a, b) => replaces(a) - replaces(b));
}

export async function register(ctx: HandlerContext, peer: Peer, label: string, fds: readonly number[]): Promise<RegisteredSocket[]> {
  const sockets = fds.map(checkSocket);
  const groups = groupSockets(label, sockets);
  const wait = lockWait(ctx.lockTimeoutMs);
  const done: Done[] = [];
  try {
    for (const group of groups.length > 1 ? inOrder(ctx, peer, label, groups) : groups) {
      done.push({ group, registration: await registerGroup(ctx, peer, label, group, sockets, wait) });
    }
  } catch (err) {
    const lost = await rollBack(ctx, label, done);
    const e = dispatcherError(err);
    const note = lost.length ? ` (${label} ${lost.join(', ')} could not be rolled back and now holds the new socket)` : '';
    throw new RequestError(e.code, `${e.message}${note}`);
  }
  const out: RegisteredSocket[] = [];
  for (const { group, registration } of done) {
    for (const m of group.members) {
      const s = sockets[m];
      out[m] = {
        label, domain: s.domain, protocol: s.protocol, address: s.address, port: s.port,
        cookie: s.cookie.toString(), replaced: registration.replaced === null ? null : registration.replaced.toString(),
      };
    }
  }
  return out;
}
