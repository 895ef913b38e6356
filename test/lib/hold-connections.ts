// Holds connections to tubulard open, as whatever user runs it (the limits
// tests run it under setpriv, from the installed copy). Connects COUNT
// times, one after the other, and pings on each; prints one JSON line:
// how many were served, and the code and message of each refusal. Keeps
// the served connections open, silent, until stdin closes.
//   node hold-connections.js SOCKET COUNT
import { HandoffClient, type Reply } from '../../src/client.js';

const [socketPath, countText] = process.argv.slice(2);
const held: HandoffClient[] = [];
const refused: { code: string; message: string }[] = [];
for (let i = 0; i < Number(countText); i++) {
  const c = HandoffClient.connect(socketPath);
  // A refused connection gets EBUSY and is closed at once: the ping may not
  // even go out, but the notice is there to read.
  const reply: Reply | null = await c.request({ op: 'ping' }).catch(() => c.receive(5000));
  if (reply?.ok) {
    held.push(c);
  } else {
    refused.push(reply ? { code: reply.error.code, message: reply.error.message } : { code: 'closed', message: '' });
    c.close();
  }
}
process.stdout.write(`${JSON.stringify({ served: held.length, refused })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  for (const c of held) c.close();
  process.exit(0);
});
