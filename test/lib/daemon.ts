// A real tubulard process for integration tests: started on a socket of the
// test's own, in the test's namespaces, and stopped at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Under an emulated kernel (the kernel matrix runs tests in qemu without KVM)
// everything is slower: TUBULAR_TEST_SLOWDOWN scales how long a log line may take.
const SLOWDOWN = Math.max(1, Number(process.env.TUBULAR_TEST_SLOWDOWN) || 1);

const here = path.dirname(fileURLToPath(import.meta.url));
/** The compiled daemon entry point. */
export const DAEMON = path.resolve(here, '../../src/daemon/main.js');

export interface Daemon {
  child: ChildProcess;
  pid: number;
  socket: string;
  /** everything it wrote on stderr so far */
  log(): string;
  /** resolves once a log line matches */
  waitLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** sends a signal and resolves to the exit code (or the signal's name) */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** resolves to the exit code (or signal) once it exits by itself */
  exited: Promise<number | string>;
  /** number of open fds of the daemon */
  fdCount(): number;
}

export interface DaemonOptions {
  bpffs: string;
  /** pass --bpffs (default); false: the daemon finds it as without the flag (TUBULAR_BPFFS, /etc/default/tubular) */
  bpffsFlag?: boolean;
  socket: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** command to run the daemon under, e.g. ['systemd-socket-activate', ...]; the daemon's argv follows */
  wrapper?: string[];
  /** wait for this log line before resolving (default: "listening on") */
  ready?: RegExp | null;
}

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const argv = [process.execPath, DAEMON, '--socket', o.socket, ...(o.bpffsFlag === false ? [] : ['--bpffs', o.bpffs]), ...(o.args ?? [])];
  const [cmd, ...rest] = [...(o.wrapper ?? []), ...argv];
  const child = spawn(cmd, rest, { stdio: ['ignore', 'inherit', 'pipe'], env: o.env ?? process.env });
  let err = '';
  const waiters: { re: RegExp; ok: (l: string) => void }[] = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const m = err.split('\n').slice(0, -1).find((l) => w.re.test(l)); // complete lines only
      if (m !== undefined) { waiters.splice(waiters.indexOf(w), 1); w.ok(m); }
    }
  };
  child.stderr!.on('data', (d) => { err += d; check(); });
  // 'close', not 'exit': by then everything it wrote on stderr has arrived
  const exited = new Promise<number | string>((ok) => child.once('close', (code, sig) => ok(code ?? sig ?? -1)));
  // A line that never comes fails the test after a while, with the log, rather than hang the suite.
  const waitLog = (re: RegExp, timeoutMs = 30_000 * SLOWDOWN): Promise<string> => new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`tubulard did not log ${re} within ${timeoutMs} ms:\n${err}`)), timeoutMs);
    timer.unref();
    waiters.push({ re, ok: (line) => { clearTimeout(timer); ok(line); } });
    check();
    void exited.then((c) => { clearTimeout(timer); fail(new Error(`tubulard exited (${c}) before logging ${re}:\n${err}`)); });
  });
  if (o.ready !== null) await waitLog(o.ready ?? /listening on/);
  return {
    child,
    pid: child.pid!,
    socket: o.socket,
    log: () => err,
    waitLog,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    fdCount: () => readdirSync(`/proc/${child.pid}/fd`).length,
  };
}

/** A temporary directory for a test file's sockets and files, removed when the process exits. */
export function workDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tubulard-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
