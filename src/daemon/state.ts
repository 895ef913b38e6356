// The daemon's handle on the dispatcher: opened once and kept open, reopened
// when the pinned state was unloaded and loaded again (its directory is then
// a new inode), and opened late when the daemon started before `tubectl load`.
// Its writes never wait for the writers' lock: they fail with EBUSY at once
// and lock-wait.ts tries them again on timers.
import { statSync } from 'node:fs';
import path from 'node:path';
import { Dispatcher, type DispatcherOptions } from '../dispatcher.js';
import { DEFAULT_BPFFS, DEFAULT_NETNS, netnsInode } from '../netns.js';
import { stateDirName } from '../paths.js';
import { RequestError } from './wire.js';

export class DispatcherHandle {
  private current: Dispatcher | undefined;
  private dirIno = 0;
  private readonly opts: DispatcherOptions;

  constructor(opts: Omit<DispatcherOptions, 'lockTimeoutMs'>) {
    this.opts = { ...opts, lockTimeoutMs: 0 };
  }

  private stateDir(): string {
    const ino = netnsInode(this.opts.netns ?? DEFAULT_NETNS);
    return path.join(this.opts.bpffs ?? DEFAULT_BPFFS, stateDirName(ino));
  }

  /** The open dispatcher, or ENOTLOADED. */
  get(): Dispatcher {
    const dir = this.current?.stateDir ?? this.stateDir();
    let ino: number | undefined;
    try {
      ino = statSync(dir).ino;
    } catch { /* not loaded (any more) */ }
    if (this.current && ino !== this.dirIno) this.close();
    if (ino === undefined) {
      throw new RequestError('ENOTLOADED', `no dispatcher is loaded (no ${dir}): run tubectl load, then try again`);
    }
    if (!this.current) {
      this.current = Dispatcher.open(this.opts);
      this.dirIno = ino;
    }
    return this.current;
  }

  close(): void {
    this.current?.close();
    this.current = undefined;
  }
}
