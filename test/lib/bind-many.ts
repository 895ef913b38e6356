// A child process that binds `count` host prefixes one at a time, for the
// concurrent-writers test: node bind-many.js BPFFS OCTET COUNT LABEL
import { parseBinding } from '../../src/binding.js';
import { Dispatcher } from '../../src/dispatcher.js';

const [bpffs, octet, count, label] = process.argv.slice(2);
const d = Dispatcher.open({ bpffs });
for (let i = 0; i < Number(count); i++) {
  d.bind(parseBinding({ label, protocol: i % 2 ? 'udp' : 'tcp', prefix: `127.${octet}.${i >> 8}.${i & 255}`, port: 1000 + (i % 7) }));
}
d.close();
