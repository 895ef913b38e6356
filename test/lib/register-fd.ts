// A child process that registers the socket it inherited as fd 3, then
// exits: registrations must outlive the process that made them.
import { Dispatcher } from '../../src/dispatcher.js';

const [bpffs, label] = process.argv.slice(2);
const d = Dispatcher.open({ bpffs });
const r = d.registerSocket(label, 3);
process.stdout.write(`${r.domain} ${r.protocol} ${r.cookie}\n`);
d.close();
