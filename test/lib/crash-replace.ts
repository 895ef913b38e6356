// A writer killed while its writes run on threads (test 23). Run as
//   node crash-replace.js <bpffs> <killAt> <from>
// it replaces the binding set with bigSet(from) and SIGKILLs itself right
// after the killAt-th call that starts work on a thread (a batch, or an
// update of a map-in-map). Threads started before it may be anywhere in
// their writes; a thread in a syscall finishes it, and the one just
// started has usually not begun. Exits 0 when the replace made fewer such
// calls. (Once a thread has been waited for, the state is what the next
// call on the main thread meets: test 70's crash points.)
// strace's fault injection counts calls per thread, so it cannot reach
// these writes; this can.
import { fileURLToPath } from 'node:url';
import { parseBinding } from '../../src/binding.js';
import { type PackedBindings, packBindingSet } from '../../src/bindingset.js';
import { Dispatcher } from '../../src/dispatcher.js';
import { native } from '../../src/native.js';
import { intercept } from './intercept.js';

export const BIG_SET = 20_000;

/** BIG_SET bindings from `from` on: 10.a.b.0/24 port 80. */
export function bigSet(from: number): PackedBindings {
  return packBindingSet(Array.from({ length: BIG_SET }, (_, k) =>
    parseBinding({ label: 'a', protocol: 'tcp', prefix: `10.${((from + k) >> 8) & 255}.${(from + k) & 255}.0/24`, port: 80 })));
}

/** The address bigSet's binding i covers (10.a.b.1). */
export const bigSetAddress = (i: number): Uint8Array => Uint8Array.of(10, (i >> 8) & 255, i & 255, 1);

const STARTS = new Set(['mapUpdateBatchStart', 'mapUpdateStart']);

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [bpffs, killAt, from] = process.argv.slice(2);
  const sys = native();
  let calls = 0;
  const killing = intercept(sys, (name, call) => {
    const r = call();
    if (STARTS.has(name) && ++calls === Number(killAt)) process.kill(process.pid, 'SIGKILL');
    return r;
  });
  const next = bigSet(Number(from));
  const d = Dispatcher.open({ bpffs, sys: killing });
  d.replacePackedBindings(next);
  d.close();
}
