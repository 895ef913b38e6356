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

/** The destination kind of a socket, or a clear error saying what is wrong with it. */
export function registrableKind(info: SocketInfo): SocketKind {
  if (info.domain !== AF_INET && info.domain !== AF_INET6) {
    throw new TubularError('EBADSOCK', `the socket is not an IPv4 or IPv6 socket (domain ${info.domain}): register TCP or UDP sockets only`);
  }
  const domain: Domain = info.domain === AF_INET ? 'ipv4' : 'ipv6';
  if (info.type === SOCK_STREAM && info.protocol === IPPROTO_TCP) {
    if (!info.listening) {
      throw new TubularError('EBADSOCK', 'the TCP socket is not listening: call listen() before registering it');
    }
    return { domain, protocol: 'tcp' };
  }
  if (info.type === SOCK_DGRAM && info.protocol === IPPROTO_UDP) {
    if (info.port === 0) {
      throw new TubularError('EBADSOCK', 'the UDP socket is not bound: bind() it to an address and port before registering it');
    }
    return { domain, protocol: 'udp' };
  }
  throw new TubularError('EBADSOCK', `unsupported socket (type ${info.type}, protocol ${info.protocol}): register a listening TCP or a bound UDP socket`);
}
