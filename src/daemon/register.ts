// register: the sockets of one request go to their destinations all or
// none. Each destination is one write of the dispatcher (one turn of the
// writers' lock), destinations without a socket first: if one fails, say
// for want of room, nothing has been replaced yet, and the destinations
// done are emptied again.
import type { DestinationStatus, Registration } from '../dispatcher.js';
import { type DestinationKey, destinationName } from '../destination.js';
import { type HandlerContext, dispatcherError, dispatcherOf } from './context.js';
import { type LockWait, lockWait, whenUnlocked } from './lock-wait.js';
import { type CheckedSocket, type SocketGroup, checkSocket, groupSockets } from './sockets.js';
import { type RegisteredSocket, RequestError } from './wire.js';

interface Done { group: SocketGroup; registration: Registration }

const key = (label: string, d: Omit<DestinationKey, 'label'>): string => destinationName({ label, domain: d.domain, protocol: d.protocol });

function destinations(ctx: HandlerContext): DestinationStatus[] {
  try {
    return dispatcherOf(ctx).destinations();
  } catch (err) {
    throw dispatcherError(err);
  }
}

/** Registers one group: a write retried while another writer holds the lock. */
function registerGroup(ctx: HandlerContext, label: string, group: SocketGroup, sockets: readonly CheckedSocket[], wait: LockWait): Promise<Registration> {
  return whenUnlocked(() => {
    return dispatcherOf(ctx).registerSocket(label, group.members.map((m) => sockets[m].fd));
  }, wait);
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
      await whenUnlocked(() => dispatcherOf(ctx).unregisterSocket({ label, domain: group.domain, protocol: group.protocol }), wait);
    } catch {
      lost.push(where);
    }
  }
  return lost;
}

export async function register(ctx: HandlerContext, label: string, fds: readonly number[]): Promise<RegisteredSocket[]> {
  const sockets = fds.map(checkSocket);
  const groups = groupSockets(label, sockets);
  const now = destinations(ctx);
  const held = new Set(now.filter((d) => d.label === label && d.sockets.length > 0).map((d) => key(label, d)));
  const replaces = (g: SocketGroup): number => Number(held.has(key(label, g)));
  const wait = lockWait(ctx.lockTimeoutMs);
  const done: Done[] = [];
  try {
    for (const group of [...groups].sort((a, b) => replaces(a) - replaces(b))) {
      done.push({ group, registration: await registerGroup(ctx, label, group, sockets, wait) });
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
