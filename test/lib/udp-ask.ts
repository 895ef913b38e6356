// A UDP question from an unconnected socket: any reply counts, whatever
// address it comes from. For servers outside this process (a Python
// service answering from its own address), which udpProbe cannot observe.
import dgram from 'node:dgram';

/** Sends one datagram; resolves to the first reply's text, 'ECONNREFUSED' or 'timeout'. */
export function udpAsk(host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let settled = false;
    const done = (v: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve(v);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? 'error'));
    s.on('message', (m) => done(m.toString()));
    s.send('hello', port, host);
  });
}
