// Verbs over sockets: register (systemd socket activation), register-pid
// (take a socket out of a running process), unregister.
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import type { Dispatcher, Registration } from '../dispatcher.js';
import { destinationName } from '../destination.js';
import { TubularError, isSystemError } from '../errors.js';
import { labelProblem } from '../label.js';
import { native, type SocketInfo } from '../native.js';
import { netnsInode } from '../netns.js';
import { formatAddress, parsePrefix, type Prefix } from '../prefix.js';
import { parseDomain, parsePort, parseProtocol, type Protocol } from '../protocol.js';
import { quote, quoteIfNeeded } from '../quote.js';
import { type SocketKind, registrableKind } from '../socket.js';
import { type Env, withDispatcher } from './env.js';
import { UsageError, parsing } from './errors.js';
import { readRegularFile } from '../read-file.js';

/** SD_LISTEN_FDS_START: systemd passes sockets from fd 3 on. */
export const LISTEN_FDS_START = 3;
/** Sockets taken from LISTEN_FDS at most. */
export const LISTEN_FDS_MAX = 1024;
/** PID_MAX_LIMIT of Linux: pids are 1-4194304. */
export const PID_MAX = 4194304;
/** A pid file holds a number and a newline; this is generous. */
export const PID_FILE_MAX_BYTES = 4096;

function checkLabel(verb: string, label: string): void {
  const problem = labelProblem(label);
  if (problem) throw new UsageError(problem, verb);
}

/** Fails unless `other` is the namespace the dispatcher was chosen in (--netns). */
function sameNetns(env: Env, other: string, what: string): void {
  if (netnsInode(env.netns) !== netnsInode(other)) {
    throw new TubularError('EINVAL', `${what} must be in the network namespace of the dispatcher, ${env.netns} (choose it with --netns)`);
  }
}

export interface PassedSocket {
  fd: number;
  name?: string;
}

/**
 * The sockets systemd passed: LISTEN_FDS of them from fd 3, if LISTEN_PID is
 * this process. With LISTEN_FDNAMES, the sockets named like the label are
 * chosen when there are any; otherwise all of them.
 */
export function passedSockets(env: Pick<Env, 'getenv' | 'pid'>, label: string): PassedSocket[] {
  const fds = env.getenv('LISTEN_FDS');
  const pid = env.getenv('LISTEN_PID');
  if (fds === undefined || fds === '') {
    throw new TubularError('EINVAL', 'no sockets were passed (LISTEN_FDS is not set): run tubectl register under systemd socket activation, ' +
      'e.g. as ExecStart= of a oneshot unit with Sockets=');
  }
  if (!/^[1-9]\d{0,3}$/.test(fds) || Number(fds) > LISTEN_FDS_MAX) {
    throw new TubularError('EINVAL', `LISTEN_FDS=${quote(fds)} should be the number of sockets passed (1-${LISTEN_FDS_MAX})`);
  }
  if (pid !== String(env.pid)) {
    throw new TubularError('EINVAL', pid === undefined
      ? 'LISTEN_PID is not set: socket activation sets it to the pid of the process that owns the sockets'
      : `LISTEN_PID=${/^\d{1,10}$/.test(pid) ? pid : quote(pid)} is not this process (${env.pid}): the sockets were passed to another process`);
  }
  const names = env.getenv('LISTEN_FDNAMES')?.split(':');
  const all: PassedSocket[] = [];
  for (let i = 0; i < Number(fds); i++) {
    all.push({ fd: LISTEN_FDS_START + i, name: names && names.length === Number(fds) ? names[i] : undefined });
  }
  const named = all.filter((s) => s.name === label);
  return named.length > 0 ? named : all;
}

function describeRegistration(r: Registration): string {
  const replaced = r.replaced === null ? '' : ` (replaced socket ${r.replaced})`;
  return `registered socket ${r.cookie} for ${destinationName(r)}${replaced}`;
}

/** Checks every socket before registering any: each must be registrable, one per destination. */
function planRegistrations(sockets: readonly { fd: number; what: string }[]): SocketKind[] {
  const n = native();
  const kinds: SocketKind[] = [];
  const seen = new Map<string, string>();
  for (const s of sockets) {
    let kind: SocketKind;
    try {
      kind = registrableKind(n.socketInfo(s.fd));
    } catch (err) {
      if (err instanceof TubularError) throw new TubularError(err.code, `${s.what}: ${err.message}`);
      if (isSystemError(err, 'ENOTSOCK') || isSystemError(err, 'EBADF')) {
        throw new TubularError('EBADSOCK', `${s.what} is not a socket: pass listening TCP or bound UDP sockets`);
      }
      throw err;
    }
    const key = `${kind.domain} ${kind.protocol}`;
    const other = seen.get(key);
    if (other) throw new TubularError('EINVAL', `${s.what} and ${other} are both ${key} sockets: a label takes one socket per domain and protocol`);
    seen.set(key, s.what);
    kinds.push(kind);
  }
  return kinds;
}

export async function register(env: Env, label: string): Promise<void> {
  checkLabel('register', label);
  sameNetns(env, '/proc/self/ns/net', 'tubectl register');
  const sockets = passedSockets(env, label).map((s) => ({ fd: s.fd, what: `fd ${s.fd}${s.name ? ` (${quoteIfNeeded(s.name, 64)})` : ''}` }));
  planRegistrations(sockets);
  const done = await withDispatcher(env, false, (d) => sockets.map((s) => d.registerSocket(label, s.fd)));
  for (const r of done) env.stdout.write(`${describeRegistration(r)}\n`);
}

export interface PidArgs {
  pid: number;
  label: string;
  protocol: Protocol;
  /** the address as a full-length prefix */
  address: Prefix;
  port: number;
}

/** Decimal without a leading zero, at most 10 digits; one above PID_MAX is then "no such process" (exit 1), as before. */
const isPid = (text: string): boolean => /^[1-9]\d{0,9}$/.test(text);

/** The pid in a pid file: a regular file of at most PID_FILE_MAX_BYTES holding one number. */
function readPidFile(file: string): number {
  let text: string;
  try {
    text = readRegularFile(file, { what: 'pid file', maxBytes: PID_FILE_MAX_BYTES, advice: 'a pid file holds one process id' });
  } catch (err) {
    if (err instanceof TubularError && err.code === 'ENOENT') {
      throw new UsageError(`invalid pid ${quote(file)}: give a process id or a file holding one`, 'register-pid');
    }
    if (err instanceof TubularError) throw new UsageError(err.message, 'register-pid');
    throw err;
  }
  const pid = text.trim();
  if (!isPid(pid)) {
    throw new UsageError(`the pid file ${quoteIfNeeded(file)} holds ${quote(pid, 20)}, not a process id (1-${PID_MAX})`, 'register-pid');
  }
  return Number(pid);
}

/** Reads `<pid|pidfile> <label> <protocol> <ip> <port>`. */
export function parsePidArgs(args: readonly string[]): PidArgs {
  const [pidText, label, protocol, ip, port] = args;
  checkLabel('register-pid', label);
  let pid: number;
  if (isPid(pidText)) {
    pid = Number(pidText);
  } else if (/^\d+$/.test(pidText)) {
    throw new UsageError(`invalid pid ${quote(pidText)}: a process id is 1-${PID_MAX}, written without leading zeros`, 'register-pid');
  } else {
    pid = readPidFile(pidText);
  }
  return parsing('register-pid', () => {
    const parsed = parsePrefix(ip);
    if (ip.includes('/') || parsed.masked) throw new TubularError('EINVAL', `invalid ip ${quote(ip)}: give an address, not a prefix`);
    return { pid, label, protocol: parseProtocol(protocol), address: parsed.prefix, port: parsePort(port) };
  });
}

/** How well a socket fits: 2 bound to the address, 1 to the wildcard of its family, 0 not at all. */
export function socketMatch(info: SocketInfo, want: Omit<PidArgs, 'pid' | 'label'>): number {
  let kind: SocketKind;
  try {
    kind = registrableKind(info);
  } catch {
    return 0;
  }
  if (kind.protocol !== want.protocol || info.port !== want.port) return 0;
  if (kind.domain !== (want.address.family === 4 ? 'ipv4' : 'ipv6')) return 0;
  let bound: Prefix;
  try {
    bound = parsePrefix(info.address).prefix;
  } catch {
    return 0;
  }
  if (bound.family !== want.address.family) return 0;
  if (bound.bytes.every((b, i) => b === want.address.bytes[i])) return 2;
  return bound.bytes.every((b) => b === 0) ? 1 : 0;
}

/** What register-pid needs from the system; tests pass a world of their own. */
export interface PidSys {
  pidfdOpen(pid: number): number;
  pidfdGetfd(pidfd: number, fd: number): number;
  /** whether the pidfd's process still runs (or is not yet reaped) as pid: then pid was not reused */
  pidfdIsPid(pidfd: number, pid: number): boolean;
  /** the fds of process pid that are sockets, from /proc/<pid>/fd */
  socketFds(pid: number): number[];
  /** the inode of the network namespace of process pid, from /proc/<pid>/ns/net */
  netnsInode(pid: number): number;
  socketInfo(fd: number): SocketInfo;
  close(fd: number): void;
}

/** The fds of a process that are sockets. */
function socketFds(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) throw new TubularError('ENOENT', `there is no process ${pid}`);
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) {
      throw new TubularError('EPERM', `cannot list the files of process ${pid}: run as root (or with CAP_SYS_PTRACE)`);
    }
    throw err;
  }
  const fds: number[] = [];
  for (const e of entries) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${e}`).startsWith('socket:')) fds.push(Number(e));
    } catch { /* closed meanwhile */ }
  }
  return fds.sort((a, b) => a - b);
}

/** The pid a pidfd refers to, as its fdinfo says (-1 once the process is reaped); undefined when the kernel does not say. */
function pidOfPidfd(pidfd: number): number | undefined {
  const m = /^Pid:\s*(-?\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, 'utf8'));
  return m ? Number(m[1]) : undefined;
}

export function systemPidSys(): PidSys {
  const n = native();
  return {
    pidfdOpen: (pid) => n.pidfdOpen(pid),
    pidfdGetfd: (pidfd, fd) => n.pidfdGetfd(pidfd, fd),
    pidfdIsPid: (pidfd, pid) => (pidOfPidfd(pidfd) ?? pid) === pid,
    socketFds,
    netnsInode: (pid) => {
      try {
        return statSync(`/proc/${pid}/ns/net`).ino;
      } catch (err) {
        if (isSystemError(err, 'ENOENT')) throw new TubularError('ENOENT', `there is no process ${pid}`);
        throw err;
      }
    },
    socketInfo: (fd) => n.socketInfo(fd),
    close: (fd) => n.close(fd),
  };
}

export interface TakenSocket {
  /** the fd number in the other process */
  fd: number;
  /** our copy: the caller closes it */
  ours: number;
}

/**
 * Takes the socket of process `want.pid` that fits `want` best. The pidfd
 * comes first: every fd taken through it is that process's, even if the
 * process exits and its pid goes to another. /proc/<pid> is read after, and
 * trusted only once the pidfd's process is found still at that pid; so a
 * pid reused in between cannot hand over another process's socket.
 */
export function takeSocket(want: PidArgs, netns: { path: string; ino: number }, sys: PidSys): TakenSocket {
  const { pid } = want;
  let pidfd: number;
  try {
    pidfd = sys.pidfdOpen(pid);
  } catch (err) {
    if (isSystemError(err, 'ESRCH')) throw new TubularError('ENOENT', `there is no process ${pid}`);
    throw err;
  }
  const exited = (): TubularError => new TubularError('ENOENT', `process ${pid} exited while tubectl looked at it: nothing was registered`);
  const still = (): void => { if (!sys.pidfdIsPid(pidfd, pid)) throw exited(); };
  let best: (TakenSocket & { score: number }) | undefined;
  try {
    const inNetns = sys.netnsInode(pid) === netns.ino;
    const fds = sys.socketFds(pid);
    still(); // what /proc said was about the pidfd's process
    if (!inNetns) {
      throw new TubularError('EINVAL', `process ${pid} must be in the network namespace of the dispatcher, ${netns.path} (choose it with --netns)`);
    }
    for (const fd of fds) {
      let ours: number;
      try {
        ours = sys.pidfdGetfd(pidfd, fd);
      } catch (err) {
        if (isSystemError(err, 'EBADF')) continue; // closed meanwhile
        if (isSystemError(err, 'ESRCH')) throw exited();
        if (isSystemError(err, 'EPERM') || isSystemError(err, 'EACCES')) {
          throw new TubularError('EPERM', `cannot take fd ${fd} of process ${pid}: run as root (or with CAP_SYS_PTRACE)`);
        }
        throw err;
      }
      const score = socketMatch(sys.socketInfo(ours), want);
      if (score > (best?.score ?? 0)) {
        if (best) sys.close(best.ours);
        best = { fd, ours, score };
      } else {
        sys.close(ours);
      }
    }
    still();
  } catch (err) {
    if (best) sys.close(best.ours);
    throw err;
  } finally {
    sys.close(pidfd);
  }
  if (!best) {
    const addr = formatAddress(want.address.family, want.address.bytes);
    const where = `${want.protocol} ${want.address.family === 4 ? addr : `[${addr}]`}:${want.port}`;
    const state = want.protocol === 'tcp' ? 'listening' : 'bound';
    throw new TubularError('ENOENT', `process ${pid} has no ${state} ${where} socket (nor one on the wildcard address): check the address and port`);
  }
  return { fd: best.fd, ours: best.ours };
}

export async function registerPid(env: Env, args: readonly string[], sys: PidSys = systemPidSys()): Promise<void> {
  const want = parsePidArgs(args);
  const taken = takeSocket(want, { path: env.netns, ino: netnsInode(env.netns) }, sys);
  try {
    const r = await withDispatcher(env, false, (d: Dispatcher) => d.registerSocket(want.label, taken.ours));
    env.stdout.write(`${describeRegistration(r)} (fd ${taken.fd} of process ${want.pid})\n`);
  } finally {
    sys.close(taken.ours);
  }
}

export async function unregister(env: Env, label: string, domain: string, protocol: string): Promise<void> {
  checkLabel('unregister', label);
  const key = parsing('unregister', () => ({ label, domain: parseDomain(domain), protocol: parseProtocol(protocol) }));
  await withDispatcher(env, false, (d) => d.unregisterSocket(key));
  env.stdout.write(`unregistered the socket of ${destinationName(key)}\n`);
}
