// Real sockets and real traffic on loopback, for integration tests. Every
// server answers with its name, so a probe tells which service got the
// connection, or how it was refused.
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import net from 'node:net';

export interface Served {
  name: string;
  fd: number;
  port: number;
  close(): Promise<void>;
}

type WithHandle = { _handle?: { fd?: number } };
const fdOf = (s: unknown): number => {
  const fd = (s as WithHandle)._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
};

/** A TCP server on host:port (0 = any free port) that writes its name to each client. */
export async function tcpServer(name: string, host = '127.0.0.1', port = 0): Promise<Served> {
  const server = net.createServer((c) => {
    c.on('error', () => { /* a client that resets is not the server's problem */ });
    c.end(name);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen({ host, port, ipv6Only: host.includes(':') }, () => ok());
  });
  const addr = server.address() as net.AddressInfo;
  return { name, fd: fdOf(server), port: addr.port, close: () => new Promise((ok) => server.close(() => ok())) };
}

// UDP servers report what they receive here: a server steered a datagram for
// 127.0.0.8 answers from its own address, which a connected client ignores.
const inbox = new EventEmitter();
inbox.setMaxListeners(0);
let probes = 0;

/** A UDP socket on host:port that reports each datagram and answers with its name. */
export async function udpServer(name: string, host = '127.0.0.1', port = 0): Promise<Served> {
  const sock = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
  sock.on('message', (m, rinfo) => {
    inbox.emit(m.toString(), name);
    sock.send(name, rinfo.port, rinfo.address);
  });
  await new Promise<void>((ok, fail) => {
    sock.once('error', fail);
    sock.bind(port, host, () => ok());
  });
  return { name, fd: fdOf(sock), port: sock.address().port, close: () => new Promise((ok) => sock.close(() => ok())) };
}

/**
 * Connects over TCP; resolves to the server's name, or the error code
 * (ECONNREFUSED...). `from`, a source address no earlier connection to this
 * destination used, makes a refusal counted exactly once: a SYN that meets
 * the server's TIME_WAIT from an earlier connection with the same ports is
 * looked up twice when refused (the TIME_WAIT answers, the client resets and
 * sends it again).
 */
export function tcpProbe(host: string, port: number, from?: string): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port, localAddress: from });
    let data = '';
    c.setTimeout(5000, () => { c.destroy(); resolve('timeout'); });
    c.on('data', (d) => { data += d; });
    c.on('end', () => resolve(data));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

/**
 * Sends one datagram; resolves to the name of the udpServer that got it (or
 * that answered), 'ECONNREFUSED' on ICMP port unreachable, or 'timeout'.
 */
export function udpProbe(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const token = `probe-${process.pid}-${++probes}`;
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let settled = false;
    const done = (v: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      inbox.off(token, done);
      s.close();
      resolve(v);
    };
    const timer = setTimeout(() => done('timeout'), 3000);
    inbox.on(token, done);
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
    s.on('message', (m) => done(m.toString()));
    s.connect(port, host, () => s.send(token));
  });
}
