// Real traffic on loopback: TCP connections per second and UDP exchanges per
// second to one server socket, reached through the dispatcher (an address
// only a binding leads to) and directly (its own address, no binding), in
// alternating rounds by the same client process, so that only the path
// differs. The binding set in force stays loaded throughout.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Binding } from '../src/binding.js';
import type { Dispatcher } from '../src/dispatcher.js';
import { parsePrefix } from '../src/prefix.js';
import { fdOf } from './sockets.js';
import { median } from './stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface TrafficFigure {
  protocol: 'tcp' | 'udp';
  /** median per second over the rounds */
  dispatched: number;
  direct: number;
  /** median of the per-round ratios: each round pairs two runs next to each other in time */
  ratio: number;
  rounds: { dispatched: number[]; direct: number[] };
  roundSeconds: number;
  concurrency: number;
}

function runClient(mode: 'tcp' | 'udp', host: string, port: number, ms: number, concurrency: number): Promise<number> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [path.join(here, 'client.js'), mode, host, String(port), String(ms), String(concurrency)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.once('exit', (code) => {
      try {
        const r = JSON.parse(out) as { done: number; seconds: number; errors: number };
        if (code !== 0 || r.errors > 0 || r.done === 0) throw new Error(`client ${mode} ${host}:${port}: exit ${code}, ${r.errors} errors, ${r.done} done`);
        ok(r.done / r.seconds);
      } catch (e) { fail(e); }
    });
  });
}

/** The addresses only the dispatcher leads to; nothing listens on them. */
const VIA = { tcp: { host: '127.0.0.2', port: 9000 }, udp: { host: '127.0.0.3', port: 9053 } };

export function trafficBindings(): Binding[] {
  return (['tcp', 'udp'] as const).map((protocol) => ({
    label: 'traffic', protocol, prefix: parsePrefix(VIA[protocol].host).prefix, port: VIA[protocol].port, action: 'steer' as const,
  }));
}

export interface TrafficOptions { rounds: number; roundMs: number; concurrency: number; log: (line: string) => void }

/** Needs trafficBindings() in the dispatcher's binding set. */
export async function measureTraffic(d: Dispatcher, opts: TrafficOptions): Promise<TrafficFigure[]> {
  const tcp = net.createServer((c) => { c.on('error', () => { /* the client closes first */ }); c.destroy(); });
  await new Promise<void>((ok) => tcp.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, ok));
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(m, r.port, r.address));
  await new Promise<void>((ok) => udp.bind(0, '127.0.0.1', ok));
  d.registerSocket('traffic', fdOf(tcp));
  d.registerSocket('traffic', fdOf(udp));
  const direct = { tcp: (tcp.address() as net.AddressInfo).port, udp: udp.address().port };
  const out: TrafficFigure[] = [];
  try {
    for (const protocol of ['tcp', 'udp'] as const) {
      const rounds = { dispatched: [] as number[], direct: [] as number[] };
      await runClient(protocol, '127.0.0.1', direct[protocol], 200, opts.concurrency); // warm up
      for (let r = 0; r < opts.rounds; r++) {
        // Alternate which path goes first, so drift hits both alike.
        const order = r % 2 === 0 ? ['dispatched', 'direct'] as const : ['direct', 'dispatched'] as const;
        for (const which of order) {
          const target = which === 'dispatched' ? VIA[protocol] : { host: '127.0.0.1', port: direct[protocol] };
          rounds[which].push(await runClient(protocol, target.host, target.port, opts.roundMs, opts.concurrency));
        }
      }
      const fig: TrafficFigure = {
        protocol, dispatched: median(rounds.dispatched), direct: median(rounds.direct),
        ratio: median(rounds.dispatched.map((v, i) => v / rounds.direct[i])), rounds, roundSeconds: opts.roundMs / 1000, concurrency: opts.concurrency,
      };
      out.push(fig);
      opts.log(`traffic ${protocol}: ${fig.dispatched.toFixed(0)}/s through the dispatcher, ${fig.direct.toFixed(0)}/s direct (${(fig.ratio * 100).toFixed(1)}%)`);
    }
  } finally {
    await new Promise<void>((ok) => tcp.close(() => ok()));
    await new Promise<void>((ok) => udp.close(() => ok()));
  }
  return out;
}
