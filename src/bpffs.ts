// The bpffs mount that holds dispatcher state.
import { statfsSync } from 'node:fs';
import { TubularError, isSystemError } from './errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;

/** Throws unless `path` is the root of, or a directory in, a bpf file system. */
export function assertBpffs(path: string): void {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) {
      throw new TubularError('ENOENT', `bpffs ${path} does not exist: mount one (mount -t bpf bpf ${path}) or pass --bpffs`);
    }
    throw err;
  }
  if (type !== BPF_FS_MAGIC) {
    throw new TubularError('EINVAL', `${path} is not a bpf file system: mount one there (mount -t bpf bpf ${path}) or pass --bpffs with a bpffs mount`);
  }
}
