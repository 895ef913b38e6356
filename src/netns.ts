// Network namespaces: a dispatcher belongs to one, named by its inode.
import { closeSync, constants, fstatSync, openSync, statSync, statfsSync } from 'node:fs';
import { TubularError, isSystemError } from './errors.js';
import { native } from './native.js';
import { quoteIfNeeded } from './quote.js';

export const DEFAULT_NETNS = '/proc/self/ns/net';
export const DEFAULT_BPFFS = '/sys/fs/bpf';

/** statfs(2) f_type of the namespace filesystem (linux/magic.h). */
export const NSFS_MAGIC = 0x6e736673;
const CLONE_NEWNET = 0x40000000;
const NS_TYPES: Record<number, string> = { 0x20000: 'mount', 0x2000000: 'cgroup', 0x4000000: 'uts', 0x8000000: 'ipc', 0x10000000: 'user', 0x20000000: 'pid', 0x80: 'time' };

const WHAT_TO_PASS = 'pass /run/netns/NAME or /proc/PID/ns/net';

function notNetns(path: string, why: string): TubularError {
  return new TubularError('EINVAL', `${quoteIfNeeded(path)} is not a network namespace (${why}): ${WHAT_TO_PASS}`);
}

function openFailed(path: string, err: unknown): unknown {
  if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) {
    return new TubularError('ENOENT', `network namespace ${quoteIfNeeded(path)} does not exist: pass a path such as /run/netns/NAME or /proc/PID/ns/net`);
  }
  if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
    return new TubularError('EPERM', `cannot open network namespace ${quoteIfNeeded(path)}: permission denied ` +
      '(the namespace of another user\'s process needs root)', { cause: err });
  }
  if (isSystemError(err, 'ELOOP')) return notNetns(path, 'too many levels of symbolic links');
  if (isSystemError(err, 'ENAMETOOLONG')) return notNetns(path, 'the name is too long');
  return err;
}

/**
 * The inode of the network namespace at `path`, after checking that it is
 * one: a file of nsfs whose type (NS_GET_NSTYPE) is a network namespace. (A mount namespace, a
 * regular file or a device is refused: before this check /etc/passwd was
 * taken for a namespace.) Devices and FIFOs are refused before they are
 * opened; the open does not block.
 */
export function netnsInode(path: string): number {
  try {
    // nsfs files stat as regular files.
    if (!statSync(path).isFile()) throw notNetns(path, 'not a namespace file');
  } catch (err) {
    throw err instanceof TubularError ? err : openFailed(path, err);
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw openFailed(path, err);
  }
  try {
    const self = `/proc/self/fd/${fd}`;
    if (statfsSync(self).type !== NSFS_MAGIC) throw notNetns(path, 'not a namespace file');
    const type = native().nsType(fd);
    if (type !== CLONE_NEWNET) throw notNetns(path, `a ${NS_TYPES[type] ?? 'different'} namespace`);
    return fstatSync(fd).ino;
  } finally {
    closeSync(fd);
  }
}
