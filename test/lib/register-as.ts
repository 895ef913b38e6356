// A client run as another user (under setpriv, from the copy installed.ts
// makes) by the policy tests: it makes its own listening TCP socket, asks
// tubulard to register it under a label, optionally unregisters it, and
// prints each reply as a JSON line.
//   node register-as.js SOCKET LABEL [unregister]
import net from 'node:net';
import { HandoffClient } from '../../src/client.js';

const [socketPath, label, then] = process.argv.slice(2);
const server = net.createServer();
await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
const c = HandoffClient.connect(socketPath);
process.stdout.write(`${JSON.stringify(await c.request({ op: 'register', label }, [fd]))}\n`);
if (then === 'unregister') {
  process.stdout.write(`${JSON.stringify(await c.request({ op: 'unregister', label, domain: 'ipv4', protocol: 'tcp' }))}\n`);
}
c.close();
server.close();
