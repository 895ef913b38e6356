// The sockets hits land on: a listening TCP and a bound UDP socket per
// family, registered for label "hit". Node owns them; we only borrow fds.
import dgram from 'node:dgram';
import net from 'node:net';
import type { Dispatcher } from '../src/dispatcher.js';
import type { Cookies } from './dataplane.js';

type WithHandle = { _handle?: { fd?: number } };
export const fdOf = (s: unknown): number => {
  const fd = (s as WithHandle)._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
};

export interface HitSockets { cookies: Cookies; close(): Promise<void> }

export async function registerHitSockets(d: Dispatcher, label = 'hit'): Promise<HitSockets> {
  const cookies: Cookies = new Map();
  const closers: (() => Promise<void>)[] = [];
  for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((ok, fail) => { server.once('error', fail); server.listen({ host, port: 0, ipv6Only: family === 6 }, ok); });
    cookies.set(`tcp ${family}`, d.registerSocket(label, fdOf(server)).cookie);
    closers.push(() => new Promise((ok) => server.close(() => ok())));
    const udp = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
    await new Promise<void>((ok, fail) => { udp.once('error', fail); udp.bind(0, host, ok); });
    cookies.set(`udp ${family}`, d.registerSocket(label, fdOf(udp)).cookie);
    closers.push(() => new Promise((ok) => udp.close(() => ok())));
  }
  return { cookies, close: async () => { for (const c of closers) await c(); } };
}
