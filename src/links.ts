// Facts about the pinned program and link of a dispatcher.
import { isSystemError } from './errors.js';
import { BPF_LINK_TYPE_NETNS, BPF_SK_LOOKUP, PIN } from './layout.js';
import type { Native } from './native.js';

/** Where upgrade pins the new program before it switches the link (then renames it over PIN.program). */
export const PENDING_PROGRAM = `${PIN.program}_new`;

export interface LinkFacts {
  id: number;
  /** the program the link runs */
  progId: number;
  /** whether it still attaches the program to the namespace `ino` */
  attached: boolean;
}

/** Runs fn with an fd of the object pinned at file (opened with `flags`); undefined when there is no pin. */
export function withPinned<T>(sys: Native, file: string, fn: (fd: number) => T, flags = 0): T | undefined {
  let fd: number;
  try {
    fd = sys.getPinned(file, flags);
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return undefined;
    throw err;
  }
  try {
    return fn(fd);
  } finally {
    sys.close(fd);
  }
}

/** The link pinned at file, or undefined when there is no pin. */
export function linkFacts(sys: Native, file: string, ino: number): LinkFacts | undefined {
  return withPinned(sys, file, (fd) => {
    const info = sys.linkInfo(fd);
    return { id: info.id, progId: info.progId, attached: info.type === BPF_LINK_TYPE_NETNS && info.netnsIno === ino };
  });
}

/** The id of the program pinned at file, or undefined. */
export function pinnedProgramId(sys: Native, file: string): number | undefined {
  return withPinned(sys, file, (fd) => sys.progInfo(fd).id);
}

/**
 * The pin of the program the link runs: PIN.program, or PENDING_PROGRAM when
 * an upgrade died after switching the link and before renaming the pin (the
 * next writer adopts it: recovery.ts). PIN.program when there is no link.
 */
export function runningProgramPin(sys: Native, at: (name: string) => string, link: LinkFacts | undefined): string {
  if (link === undefined || pinnedProgramId(sys, at(PIN.program)) === link.progId) return PIN.program;
  return pinnedProgramId(sys, at(PENDING_PROGRAM)) === link.progId ? PENDING_PROGRAM : PIN.program;
}

/** A BPF link that attaches an sk_lookup program to a network namespace. */
export interface SkLookupLink {
  id: number;
  progId: number;
}

/**
 * Every sk_lookup link attached to the namespace `ino`, whoever made it.
 * Another dispatcher, loaded under another bpffs, shows here and nowhere
 * else. The kernel lists links to CAP_SYS_ADMIN only: without it, undefined
 * (not known).
 */
export function skLookupLinks(sys: Native, ino: number): SkLookupLink[] | undefined {
  const found: SkLookupLink[] = [];
  const next = (id: number): number | undefined => {
    try {
      return sys.linkNextId(id);
    } catch (err) {
      if (isSystemError(err, 'EPERM')) return undefined;
      throw err;
    }
  };
  for (let id = next(0); id !== 0; id = next(id)) {
    if (id === undefined) return undefined;
    let fd: number;
    try {
      fd = sys.linkFdById(id);
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) continue; // it went away meanwhile
      if (isSystemError(err, 'EPERM')) return undefined;
      throw err;
    }
    try {
      const info = sys.linkInfo(fd);
      if (info.type === BPF_LINK_TYPE_NETNS && info.attachType === BPF_SK_LOOKUP && info.netnsIno === ino) found.push({ id: info.id, progId: info.progId });
    } finally {
      sys.close(fd);
    }
  }
  return found;
}
