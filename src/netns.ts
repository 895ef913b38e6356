// Network namespaces: a dispatcher belongs to one, named by its inode.
import { statSync } from 'node:fs';
import { TubularError, isSystemError } from './errors.js';

export const DEFAULT_NETNS = '/proc/self/ns/net';
export const DEFAULT_BPFFS = '/sys/fs/bpf';

export function netnsInode(path: string): number {
  try {
    return statSync(path).ino;
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) {
      throw new TubularError('ENOENT', `network namespace ${path} does not exist: pass a path such as /run/netns/NAME or /proc/PID/ns/net`);
    }
    throw err;
  }
}
