// What makes a socket registrable: an IPv4/IPv6 TCP socket that listens, or
// a UDP socket that is bound. Its domain and protocol pick the destination.
import { TubularError } from './errors.js';
import type { SocketInfo } from './native.js';
import type { Domain, Protocol } from './protocol.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

export interface SocketKind { domain: Domain; protocol: Protocol }

/** Why a socket cannot be registered, each reason with its own code. */
export interface SocketProblem {
  code: 'EAFNOSUPPORT' | 'EPROTONOSUPPORT' | 'ENOTLISTENING' | 'ENOTBOUND';
  message: string;
}

export function socketProblem(info: SocketInfo): SocketProblem | undefined {
  if (info.domain !== AF_INET && info.domain !== AF_INET6) {
    return { code: 'EAFNOSUPPORT', message: `not an IPv4 or IPv6 socket (domain ${info.domain}): register TCP or UDP sockets only` };
  }
  const tcp = info.type === SOCK_STREAM && info.protocol === IPPROTO_TCP;
  const udp = info.type === SOCK_DGRAM && info.protocol === IPPROTO_UDP;
  if (!tcp && !udp) {
    return { code: 'EPROTONOSUPPORT', message: `neither TCP nor UDP (type ${info.type}, protocol ${info.protocol}): register a listening TCP or a bound UDP socket` };
  }
  if (tcp && !info.listening) return { code: 'ENOTLISTENING', message: 'a TCP socket that is not listening: call listen() before registering it' };
  if (udp && info.port === 0) return { code: 'ENOTBOUND', message: 'a UDP socket that is not bound: bind() it to an address and port before registering it' };
  return undefined;
}

/** The destination kind of a socket, or a clear error saying what is wrong with it. */
export function registrableKind(info: SocketInfo): SocketKind {
  const problem = socketProblem(info);
  if (problem) throw new TubularError('EBADSOCK', `the socket is ${problem.message}`);
  return {
    domain: info.domain === AF_INET ? 'ipv4' : 'ipv6',
    protocol: info.type === SOCK_STREAM ? 'tcp' : 'udp',
  };
}
