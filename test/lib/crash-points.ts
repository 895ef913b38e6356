// Crash points without code changes: a command runs under strace, which
// lists its calls of the syscalls that change state (bpf, rename, unlink,
// mkdir, rmdir); then the command runs again and strace's fault injection
// kills it with SIGKILL on entering its Nth call of one syscall, before the
// call does anything.
//
// Which points are worth a run: the state a killed process leaves is what
// its calls changed before it died, so killing it before a call that reads
// leaves the same state as killing it right after the last call that wrote.
// The distinct states are "before the first write" and "right after each
// write"; those are the points walked. TUBULAR_CRASH_WALK=all walks every
// call instead (slow: for checking that claim).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs strace with args to completion; env is added to this process's. */
export function runTraced(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((ok, fail) => {
    const child = spawn('strace', args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.once('error', fail);
    child.once('close', (code, signal) => ok({ code, signal, stdout, stderr }));
  });
}

/** The syscalls whose calls are crash points: each one changes state, or may. */
export const CRASH_SYSCALLS = ['bpf', 'rename', 'renameat', 'renameat2', 'unlink', 'unlinkat', 'mkdir', 'mkdirat', 'rmdir'] as const;

/** bpf() commands that change something a process leaves behind. */
const WRITING_BPF = new Set([
  'BPF_MAP_UPDATE_ELEM', 'BPF_MAP_DELETE_ELEM', 'BPF_MAP_UPDATE_BATCH', 'BPF_MAP_DELETE_BATCH',
  'BPF_MAP_LOOKUP_AND_DELETE_ELEM', 'BPF_MAP_LOOKUP_AND_DELETE_BATCH', 'BPF_MAP_FREEZE',
  'BPF_OBJ_PIN', 'BPF_LINK_CREATE', 'BPF_LINK_UPDATE', 'BPF_LINK_DETACH', 'BPF_PROG_ATTACH', 'BPF_PROG_DETACH',
]);

export interface Call {
  syscall: string;
  /** 1-based: this is the nth call of its syscall */
  nth: number;
  /** e.g. "BPF_OBJ_PIN binding_set_new", "rename binding_set_new" */
  what: string;
  /** whether it changed anything (a failed call changes nothing) */
  writes: boolean;
}

export interface CrashPoint {
  syscall: string;
  /** kill on entering the nth call of syscall */
  n: number;
  /** the call killed, as Call.what */
  call: string;
  /** what the killed call would have done, and the last write before it */
  what: string;
}

const TRACE = ['-f', '-qq', '-e', `trace=${CRASH_SYSCALLS.join(',')}`];

function describeCall(syscall: string, args: string): string {
  // Temporary names end in 16 random hex digits: the same call in another run.
  const names = [...args.matchAll(/"([^"]*)"/g)].map((m) => path.basename(m[1]).replace(/_[0-9a-f]{16}$/, '_*'));
  if (syscall === 'bpf') return [/^(BPF_\w+)/.exec(args)?.[1] ?? 'bpf', ...names].join(' ');
  return [syscall, ...names].join(' ');
}

/** The calls of the traced process's main thread, in order, from strace -f output. */
export function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const counts = new Map<string, number>();
  let main: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\w+)\((.*)$/.exec(line);
    if (!m || !(CRASH_SYSCALLS as readonly string[]).includes(m[2])) continue;
    main ??= m[1];
    if (m[1] !== main) continue;
    const [, , syscall, args] = m;
    const nth = (counts.get(syscall) ?? 0) + 1;
    counts.set(syscall, nth);
    const failed = /\)\s+=\s+-1\s/.test(line);
    const cmd = /^(BPF_\w+)/.exec(args)?.[1] ?? '';
    calls.push({ syscall, nth, what: describeCall(syscall, args), writes: !failed && (syscall !== 'bpf' || WRITING_BPF.has(cmd)) });
  }
  return calls;
}

/** Runs argv under strace and returns its calls of the crash syscalls, with the command's result. */
export async function traceCalls(argv: readonly string[], env?: NodeJS.ProcessEnv): Promise<{ calls: Call[]; result: Run }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tubular-trace-'));
  try {
    const out = path.join(dir, 'trace');
    const result = await runTraced([...TRACE, '-o', out, ...argv], env);
    return { calls: parseTrace(readFileSync(out, 'utf8')), result };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The points worth a kill: the first write, and the call after each write
 * (killed on entering it, the process leaves exactly what that write made).
 * With `every`, all calls.
 */
export function crashPoints(calls: readonly Call[], every = process.env.TUBULAR_CRASH_WALK === 'all'): CrashPoint[] {
  const lastWrite = (i: number): Call | undefined => calls.slice(0, i).reverse().find((c) => c.writes);
  const at = (c: Call, i: number): CrashPoint => {
    const before = lastWrite(i);
    return { syscall: c.syscall, n: c.nth, call: c.what, what: `before ${c.what}${before ? `, after ${before.what}` : ''}` };
  };
  return calls.flatMap((c, i) => (every || (c.writes && !lastWrite(i)) || calls[i - 1]?.writes ? [at(c, i)] : []));
}

export interface Killed {
  /** whether strace killed it (false: the command finished before the nth call) */
  killed: boolean;
  /** the call it was killed on entering, as Call.what */
  at?: string;
  result: Run;
}

/** Runs argv under strace, killing it with SIGKILL on entering its nth call of syscall. */
export async function killAt(argv: readonly string[], point: Pick<CrashPoint, 'syscall' | 'n'>, env?: NodeJS.ProcessEnv): Promise<Killed> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tubular-trace-'));
  try {
    const out = path.join(dir, 'trace');
    const result = await runTraced([
      '-f', '-qq', '-o', out, '-e', `trace=${point.syscall}`, '-e', `inject=${point.syscall}:signal=KILL:when=${point.n}`, ...argv,
    ], env);
    // strace ends as its tracee did: killed by SIGKILL. (No --seccomp-bpf:
    // with it, strace 6.1 does not deliver an injected signal.)
    return { killed: result.code === 137 || result.signal === 'SIGKILL', at: parseTrace(readFileSync(out, 'utf8')).at(-1)?.what, result };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
