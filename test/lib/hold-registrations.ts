// Registers sockets through tubulard and keeps them open, as whatever user
// runs it (the limits tests run it under setpriv, from the installed copy).
// For each label in turn: a TCP listener on 127.0.0.1 that answers with the
// label, registered under it; prints each reply as a JSON line. Keeps the
// listeners (and so the registrations) until stdin closes.
//   node hold-registrations.js SOCKET LABEL...
import net from 'node:net';
import { HandoffClient } from '../../src/client.js';

const [socketPath, ...labels] = process.argv.slice(2);
const servers: net.Server[] = [];
const c = HandoffClient.connect(socketPath);
for (const label of labels) {
  const server = net.createServer((conn) => conn.end(label));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  servers.push(server);
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  process.stdout.write(`${JSON.stringify(await c.request({ op: 'register', label }, [fd]))}\n`);
}
c.close();
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of servers) s.close();
  process.exit(0);
});
