// A child process that connects over TCP in a loop until its stdin closes,
// then prints a JSON count of who answered. Runs in its parent's namespace.
import { tcpProbe } from './traffic.js';

const [host, port] = [process.argv[2], Number(process.argv[3])];
const seen: Record<string, number> = {};
let stop = false;
process.stdin.on('data', () => {});
process.stdin.on('end', () => { stop = true; });
process.stdin.resume();
process.stdout.write('ready\n');
let total = 0;
while (!stop) {
  const who = await tcpProbe(host, port);
  seen[who] = (seen[who] ?? 0) + 1;
  total++;
}
process.stdout.write(JSON.stringify({ total, seen }) + '\n');
