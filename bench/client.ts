// The traffic client, run as its own process: for a fixed time, keeps
// `concurrency` TCP connections being opened (each closed once connected) or
// UDP request/response exchanges in flight against host:port, then prints
// {"done": N, "seconds": S, "errors": E}.
//   node client.js tcp|udp HOST PORT MILLISECONDS CONCURRENCY
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, host, portText, msText, concurrencyText] = process.argv.slice(2);
const port = Number(portText);
const ms = Number(msText);
const concurrency = Number(concurrencyText);
let done = 0;
let errors = 0;
const start = process.hrtime.bigint();
const deadline = start + BigInt(ms) * 1_000_000n;
const running = (): boolean => process.hrtime.bigint() < deadline;

function finish(): void {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(`${JSON.stringify({ done, seconds, errors })}\n`);
  process.exit(0);
}

if (mode === 'tcp') {
  let active = concurrency;
  const loop = (): void => {
    if (!running()) { if (--active === 0) finish(); return; }
    const c = net.connect({ host, port });
    let settled = false;
    c.once('connect', () => { settled = true; done++; c.destroy(); loop(); });
    c.on('error', () => { if (!settled) { settled = true; errors++; loop(); } c.destroy(); });
  };
  for (let i = 0; i < concurrency; i++) loop();
} else {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const payload = Buffer.from('ping');
  let inFlight = 0;
  const send = (): void => { inFlight++; s.send(payload, port, host); };
  s.on('message', () => {
    done++;
    inFlight--;
    if (running()) send();
    else if (inFlight === 0) finish();
  });
  s.bind(0, host.includes(':') ? '::1' : '127.0.0.1', () => { for (let i = 0; i < concurrency; i++) send(); });
  // A lost datagram would stall its slot: give up waiting shortly after the deadline.
  setTimeout(finish, ms + 500).unref();
}
