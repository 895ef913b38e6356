// The sockets of a register request, checked before the dispatcher sees
// them, each problem with its own code; then grouped by destination, one
// socket for each.
import { native } from '../native.js';
import type { Domain, Protocol } from '../protocol.js';
import { registrableKind, socketProblem } from '../socket.js';
import { RequestError } from './wire.js';

export interface CheckedSocket {
  fd: number;
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
  return { fd, ...registrableKind(info), address: info.address, port: info.port, reusePort: info.reusePort, cookie: info.cookie };
}

/** Groups the sockets by destination. */
export function groupSockets(label: string, sockets: readonly CheckedSocket[]): SocketGroup[] {
  const groups = new Map<string, SocketGroup>();
  sockets.forEach((s, i) => {
    const key = `${s.domain}/${s.protocol}`;
    const group = groups.get(key);
    if (!group) {
      groups.set(key, { domain: s.domain, protocol: s.protocol, members: [i] });
      return;
    }
    throw new RequestError('EDUPLICATE', `two sockets go to ${label} ${s.domain} ${s.protocol}: send one socket per domain and protocol`);
  });
  return [...groups.values()];
}
