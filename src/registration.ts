// Which sockets may be registered together, and in which namespace.
import { statSync } from 'node:fs';
import { TubularError, context, isSystemError } from './errors.js';
import type { Native, SocketInfo } from './native.js';
import { type SocketKind, registrableKind } from './socket.js';
import { listeningInodes } from './socket-owner.js';
import type { Location } from './statedir.js';

/**
 * The destination kind of sockets registered together: one socket, or the
 * members of one SO_REUSEPORT group (same family, protocol, address and
 * port, SO_REUSEPORT set on each).
 */
export function registrableGroup(label: string, infos: readonly SocketInfo[]): SocketKind {
  const kinds = infos.map(registrableKind);
  const kind = kinds[0];
  if (infos.length > 1) {
    const first = infos[0];
    const group = infos.every((i, n) => i.reusePort && kinds[n].domain === kind.domain && kinds[n].protocol === kind.protocol &&
      i.address === first.address && i.port === first.port);
    if (!group) {
      throw new TubularError('EBADSOCK', `${infos.length} sockets for ${label} ${kind.domain} ${kind.protocol} are not one SO_REUSEPORT group: ` +
        'register one socket per family and protocol, or the members of one group (same address and port, SO_REUSEPORT set)');
    }
  }
  return kind;
}

/**
 * Refuses a socket of another network namespace: the data plane could
 * never hand it a connection. In the caller's own namespace the namespace
 * cookies are compared (no privilege needed), or before Linux 5.14, which
 * has no SO_NETNS_COOKIE, the socket is looked for among the namespace's
 * bound and listening sockets in /proc/self/net (no privilege either);
 * elsewhere the socket's namespace is asked for (CAP_NET_ADMIN). `which`
 * names the socket in the message (socket #2).
 */
export function checkNamespace(sys: Native, fd: number, loc: Location, which: string): void {
  const refuse = (what: string): never => {
    throw new TubularError('EBADSOCK', `${which} belongs to another network namespace (${what}) than the dispatcher's ` +
      `(${loc.netns}): create it inside that namespace`);
  };
  const own = ownNamespace(sys);
  if (own.ino === loc.ino) {
    const cookie = netnsCookie(sys, fd);
    if (cookie === undefined) {
      const ino = context('inspect the socket', () => sys.inode(fd));
      if (!(listeningInodes() ?? new Set()).has(ino)) refuse(`socket inode ${ino} is not among this namespace's sockets in /proc/self/net`);
    } else {
      own.cookie ??= sys.ownNetnsCookie();
      if (cookie !== own.cookie) refuse(`cookie ${cookie}`);
    }
    return;
  }
  const ino = context('find the socket\'s network namespace', () => sys.socketNetnsInode(fd));
  if (ino !== loc.ino) refuse(`inode ${ino}`);
}

let known: { sys: Native; ino: number; cookie?: bigint } | undefined;

/**
 * This process's network namespace, found once: nothing in this code
 * moves a process to another namespace (no setns, no unshare), and
 * neither changes: its inode, and its cookie when first asked for (that
 * costs a socket of its own).
 */
function ownNamespace(sys: Native): { ino: number; cookie?: bigint } {
  if (known?.sys !== sys) known = { sys, ino: statSync('/proc/self/ns/net').ino };
  return known;
}

/** SO_NETNS_COOKIE of a socket; undefined on a kernel without it (before Linux 5.14: ENOPROTOOPT). */
function netnsCookie(sys: Native, fd: number): bigint | undefined {
  try {
    return sys.socketNetnsCookie(fd);
  } catch (err) {
    if (isSystemError(err, 'ENOPROTOOPT')) return undefined;
    return context('find the socket\'s network namespace', () => { throw err; });
  }
}
