// The tubulard load generator, run as its own process: `clients` connections
// each send register requests (one listening TCP socket attached) back to
// back for a fixed time, and it prints {"requests", "seconds", "p50Us",
// "p99Us", "maxUs"}.
//   node daemon-client.js SOCKET_PATH MILLISECONDS CLIENTS
import net from 'node:net';
import { HandoffClient } from '../src/client.js';
import { fdOf } from './sockets.js';
import { quantile } from './stats.js';

const [socketPath, msText, clientsText] = process.argv.slice(2);
const server = net.createServer();
await new Promise<void>((ok) => server.listen({ host: '127.0.0.1', port: 0 }, ok));
const fd = fdOf(server);
const latencies: number[] = [];
const start = process.hrtime.bigint();
const deadline = start + BigInt(Number(msText)) * 1_000_000n;

async function client(): Promise<void> {
  const c = HandoffClient.connect(socketPath);
  try {
    while (process.hrtime.bigint() < deadline) {
      const t0 = process.hrtime.bigint();
      const reply = await c.request({ op: 'register', label: 'bench' }, [fd]);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      if (!reply.ok) throw new Error(`register refused: ${JSON.stringify(reply)}`);
    }
  } finally {
    c.close();
  }
}

await Promise.all(Array.from({ length: Number(clientsText) }, client));
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(`${JSON.stringify({
  requests: latencies.length, seconds,
  p50Us: quantile(latencies, 0.5), p99Us: quantile(latencies, 0.99), maxUs: Math.max(...latencies),
})}\n`);
server.close();
