// The bpffs mount that holds a dispatcher's state. Pinning into a directory
// of another filesystem fails with EPERM, which reads as "run it as root";
// checking the filesystem first gives the real reason.
import { statSync, statfsSync } from 'node:fs';
import { TubularError, isSystemError } from './errors.js';
import { quoteIfNeeded } from './quote.js';

/** statfs(2) f_type of bpffs (linux/magic.h). */
export const BPF_FS_MAGIC = 0xcafe4a11;

const HOW = 'mount one with mount -t bpf bpf PATH, or pass --bpffs PATH of a bpffs mount (the default is /sys/fs/bpf)';

/** Throws a TubularError unless `path` is a directory on bpffs. */
export function assertBpffs(path: string): void {
  const shown = quoteIfNeeded(path);
  let type: number;
  try {
    type = statfsSync(path).type;
    if (!statSync(path).isDirectory()) throw new TubularError('EINVAL', `bpffs path ${shown} is not a directory: ${HOW}`);
  } catch (err) {
    if (err instanceof TubularError) throw err;
    if (isSystemError(err, 'ENOENT')) throw new TubularError('ENOENT', `bpffs path ${shown} does not exist: ${HOW}`);
    if (isSystemError(err, 'ENOTDIR')) throw new TubularError('EINVAL', `bpffs path ${shown} is not a directory: ${HOW}`);
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
      throw new TubularError('EPERM', `cannot look at bpffs path ${shown}: permission denied`, { cause: err });
    }
    if (isSystemError(err, 'ENAMETOOLONG')) throw new TubularError('EINVAL', `bpffs path ${shown} is too long: ${HOW}`);
    throw err;
  }
  if (type !== BPF_FS_MAGIC) {
    throw new TubularError('EINVAL', `${shown} is not a bpffs mount (filesystem type 0x${type.toString(16)}): ` +
      `mount one there with mount -t bpf bpf ${shown}, or pass --bpffs PATH of a bpffs mount (the default is /sys/fs/bpf)`);
  }
}
