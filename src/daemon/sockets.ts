// The sockets of a register request, checked before the dispatcher sees
// them, each problem with its own code; then grouped by destination. A
// destination takes one socket, or the members of one SO_REUSEPORT group
// (same family, protocol, address and port, SO_REUSEPORT set).
import { native, type SocketInfo } from '../native.js';
import { SOCKET_SLOTS } from '../layout.js';
import type { Domain, Protocol } from '../protocol.js';
import { registrableKind, socketProblem } from '../socket.js';
import { RequestError } from './wire.js';

export interface CheckedSocket {
  fd: number;
  /** what the kernel said of it, handed on to the dispatcher */
  info: SocketInfo;
  domain: Domain;
  protocol: Protocol;
  address: string;
  port: number;
  reusePort: boolean;
  cookie: bigint;
}

/** The sockets going to one destination, by their position in the request. */
export interface SocketGroup {
  domain: Domain;
  protocol: Protocol;
  members: number[];
}

/** What kind of socket fd is, or a RequestError saying what is wrong with socket #index+1. */
export function checkSocket(fd: number, index: number): CheckedSocket {
  const n = native();
  const which = `socket #${index + 1}`;
  if (n.socketType(fd) < 0) throw new RequestError('ENOTSOCK', `${which} is not a socket: attach the fds of listening TCP or bound UDP sockets`);
  const info = n.socketInfo(fd);
  const problem = socketProblem(info);
  if (problem) throw new RequestError(problem.code, `${which} is ${problem.message}`);
  return { fd, info, ...registrableKind(info), address: info.address, port: info.port, reusePort: info.reusePort, cookie: info.cookie };
}

/** Groups the sockets by destination; several for one must be one SO_REUSEPORT group. */
export function groupSockets(label: string, sockets: readonly CheckedSocket[]): SocketGroup[] {
  const groups = new Map<string, SocketGroup>();
  sockets.forEach((s, i) => {
    const key = `${s.domain}/${s.protocol}`;
    const group = groups.get(key);
    if (!group) {
      groups.set(key, { domain: s.domain, protocol: s.protocol, members: [i] });
      return;
    }
    const where = `${label} ${s.domain} ${s.protocol}`;
    const same = group.members.find((m) => sockets[m].cookie === s.cookie);
    if (same !== undefined) throw new RequestError('EDUPLICATE', `socket #${i + 1} is socket #${same + 1} again: attach each socket once`);
    const first = sockets[group.members[0]];
    if (!first.reusePort || !s.reusePort || first.address !== s.address || first.port !== s.port) {
      throw new RequestError('EDUPLICATE', `sockets #${group.members[0] + 1} and #${i + 1} both go to ${where} but are not one SO_REUSEPORT group: ` +
        'send one socket per domain and protocol, or the members of one group (same address and port, SO_REUSEPORT set on each)');
    }
    if (group.members.length >= SOCKET_SLOTS) {
      throw new RequestError('E2BIG', `more than ${SOCKET_SLOTS} sockets go to ${where}: a destination takes at most ${SOCKET_SLOTS} members of a group`);
    }
    group.members.push(i);
  });
  return [...groups.values()];
}
