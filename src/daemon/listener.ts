// The listening socket: the one systemd passed (socket activation), or one
// the daemon creates at a path, mode 0660 with a chosen group. A socket file
// left by a dead daemon (connect is refused) is replaced; a live daemon's
// is not.
import { chmodSync, chownSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { native } from '../native.js';

const SOCK_SEQPACKET = 5;
const SD_LISTEN_FDS_START = 3;
const SOCKET_MODE = 0o660;

export interface Listener {
  fd: number;
  /** the path to unlink on exit; undefined when systemd owns the socket */
  path?: string;
  /** inode of the socket file this process created */
  ino?: number;
  /** where it came from, for the log */
  description: string;
}

/** The socket passed by systemd, if any; throws when it is not one the daemon can use. */
export function activatedListener(env: NodeJS.ProcessEnv = process.env): Listener | undefined {
  if (!env.LISTEN_FDS || Number(env.LISTEN_PID) !== process.pid) return undefined;
  const count = Number(env.LISTEN_FDS);
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (count !== 1) throw new Error(`systemd passed ${count} sockets: tubulard.socket must have exactly one ListenSequentialPacket=`);
  const n = native();
  const fd = SD_LISTEN_FDS_START;
  if (n.socketType(fd) !== SOCK_SEQPACKET || !n.socketInfo(fd).listening) {
    throw new Error('the socket systemd passed is not a listening SOCK_SEQPACKET socket: use ListenSequentialPacket= in tubulard.socket');
  }
  n.setNonBlocking(fd, true);
  return { fd, description: 'socket passed by systemd' };
}

/** Listens on a path, replacing a stale socket file; group (gid) owns the socket when given. */
export function pathListener(socketPath: string, gid: number | undefined, backlog = 128): Listener {
  const n = native();
  // Like RuntimeDirectory=: create the socket's directory, not its parents.
  try {
    mkdirSync(path.dirname(socketPath), { mode: 0o755 });
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) throw new Error(`cannot create ${path.dirname(socketPath)}: its parent does not exist (choose another --socket)`);
    if (!isSystemError(err, 'EEXIST')) throw err;
  }
  const listen = (): number => {
    const old = process.umask(0o177);
    try {
      return n.seqpacketListen(socketPath, backlog);
    } finally {
      process.umask(old);
    }
  };
  let fd: number;
  try {
    fd = listen();
  } catch (err) {
    if (!isSystemError(err, 'EADDRINUSE')) throw err;
    if (!lstatSync(socketPath).isSocket()) throw new Error(`${socketPath} exists and is not a socket: remove it or choose another --socket`);
    try {
      n.close(n.seqpacketConnect(socketPath));
    } catch (e) {
      if (!isSystemError(e, 'ECONNREFUSED')) throw e;
      unlinkSync(socketPath); // a dead daemon's socket
      fd = listen();
      return finish(socketPath, fd, gid, ' (replaced a stale socket file)');
    }
    throw new Error(`another daemon is listening on ${socketPath}: stop it first, or choose another --socket`);
  }
  return finish(socketPath, fd, gid, '');
}

function finish(socketPath: string, fd: number, gid: number | undefined, note: string): Listener {
  try {
    if (gid !== undefined) chownSync(socketPath, -1, gid);
    chmodSync(socketPath, SOCKET_MODE);
  } catch (err) {
    native().close(fd);
    throw err;
  }
  return { fd, path: socketPath, ino: lstatSync(socketPath).ino, description: `${socketPath}${note}` };
}
