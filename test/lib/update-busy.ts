// One batch update by the addon, for test 05's EBUSY retry. Run as
//   node update-busy.js <count>
// with a hash map of u32 keys and u64 values as fd 3: writes keys
// 0..count-1, each with the value key * 3 + 7, in one mapUpdateBatch, and
// prints how many it wrote, or the error (exit 1). Its first bpf() call
// reads the map's sizes, its second is the batch: the test makes the
// batch's calls fail with EBUSY (strace's fault injection), as some
// kernels do to two writers of one hash map.
import { native } from '../../src/native.js';

const count = Number(process.argv[2]);
const keys = Buffer.alloc(count * 4);
const values = Buffer.alloc(count * 8);
for (let i = 0; i < count; i++) {
  keys.writeUInt32LE(i, i * 4);
  values.writeBigUInt64LE(BigInt(i) * 3n + 7n, i * 8);
}
try {
  process.stdout.write(`${native().mapUpdateBatch(3, keys, values, count, 0)}\n`);
} catch (err) {
  process.stdout.write(`${String(err)}\n`);
  process.exitCode = 1;
}
