// Reading a file named on the command line (or a settings file), within a
// limit. readFileSync
// would read /dev/zero until memory runs out and block forever on a FIFO
// nobody writes to; this refuses anything but a regular file, without
// blocking, and stops reading one byte past the limit.
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { TubularError, isSystemError } from './errors.js';
import { quoteIfNeeded } from './quote.js';

/** "256 MiB", "4 KiB", "100 bytes". */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
    if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} byte${n === 1 ? '' : 's'}`;
}

/** What a file is, for a message refusing it. */
function kind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function cannot(what: string, file: string, err: unknown): TubularError {
  const name = `cannot read ${what} ${quoteIfNeeded(file)}`;
  if (isSystemError(err, 'ENOENT')) return new TubularError('ENOENT', `${name}: no such file`);
  if (isSystemError(err, 'ENOTDIR')) return new TubularError('ENOENT', `${name}: a component of the path is not a directory`);
  if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) return new TubularError('EPERM', `${name}: permission denied`);
  if (isSystemError(err)) {
    // Node's message ends with the path, unbounded: keep only the reason.
    return new TubularError('EINVAL', `${name}: ${err.message.replace(/, \w+ '[\s\S]*$/, '')}`, { cause: err });
  }
  return new TubularError('EINVAL', `${name}: ${String(err)}`, { cause: err });
}

export interface ReadLimit {
  /** what the file is, for messages: "bindings file" */
  what: string;
  /** bytes read at most */
  maxBytes: number;
  /** said after the limit when a file is too large: what to do */
  advice: string;
}

function refuse(file: string, st: Stats, limit: ReadLimit): TubularError {
  return new TubularError('EINVAL', `cannot read ${limit.what} ${quoteIfNeeded(file)}: it is ${kind(st)}, give a regular file`);
}

/** `size` undefined: known only to be over the limit. */
function tooLarge(file: string, size: number | undefined, limit: ReadLimit): TubularError {
  const is = size === undefined ? 'is' : `is ${formatBytes(size)},`;
  return new TubularError('EINVAL', `${limit.what} ${quoteIfNeeded(file)} ${is} over the limit of ${formatBytes(limit.maxBytes)}: ${limit.advice}`);
}

/** The text (UTF-8) of a regular file of at most limit.maxBytes: see readRegularBytes. */
export function readRegularFile(file: string, limit: ReadLimit): string {
  return readRegularBytes(file, limit).toString('utf8');
}

/**
 * The bytes of a regular file of at most limit.maxBytes. Devices, FIFOs,
 * sockets and directories are refused before they are opened, and again
 * after (fstat of the opened fd, in case the path changed meanwhile); the
 * open is non-blocking, so a FIFO swapped in cannot block.
 */
export function readRegularBytes(file: string, limit: ReadLimit): Buffer {
  const f = openRegularFile(file, limit);
  try {
    return f.readAll();
  } finally {
    f.close();
  }
}

/** A regular file, open, as openRegularFile gives it. */
export interface RegularFile {
  /** its size when it was opened (it may grow: reads go to its end, within the limit) */
  size: number;
  /** `count` bytes at `position` into `into` at `at`; 0 at the end; throws past the limit */
  read(into: Uint8Array, at: number, count: number, position: number): number;
  /** every byte, within the limit */
  readAll(): Buffer;
  close(): void;
}

/** Opens a regular file of at most limit.maxBytes, with the checks of readRegularBytes, to read it in parts. */
export function openRegularFile(file: string, limit: ReadLimit): RegularFile {
  try {
    const st = statSync(file);
    if (!st.isFile()) throw refuse(file, st, limit);
  } catch (err) {
    throw err instanceof TubularError ? err : cannot(limit.what, file, err);
  }
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw cannot(limit.what, file, err);
  }
  let size: number;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw refuse(file, st, limit);
    if (st.size > limit.maxBytes) throw tooLarge(file, st.size, limit);
    size = st.size;
  } catch (err) {
    closeSync(fd);
    throw err instanceof TubularError ? err : cannot(limit.what, file, err);
  }
  const read = (into: Uint8Array, at: number, count: number, position: number): number => {
    // Never more than one byte past the limit: a file that grew past it is refused.
    const want = Math.min(count, limit.maxBytes + 1 - position);
    if (want <= 0) throw tooLarge(file, undefined, limit);
    let got: number;
    try {
      got = readSync(fd, into, at, want, position);
    } catch (err) {
      throw cannot(limit.what, file, err);
    }
    if (position + got > limit.maxBytes) throw tooLarge(file, undefined, limit);
    return got;
  };
  return {
    size,
    read,
    readAll(): Buffer {
      // The size can be stale (a growing file) or 0 (procfs): read until the end.
      let buf = Buffer.allocUnsafe(Math.min(limit.maxBytes + 1, Math.max(size + 1, 64 * 1024)));
      let used = 0;
      for (;;) {
        if (used === buf.length) {
          const bigger = Buffer.allocUnsafe(Math.min(limit.maxBytes + 1, buf.length * 2));
          buf.copy(bigger, 0, 0, used);
          buf = bigger;
        }
        const got = read(buf, used, buf.length - used, used);
        if (got === 0) break;
        used += got;
      }
      return buf.subarray(0, used);
    },
    close: () => closeSync(fd),
  };
}
