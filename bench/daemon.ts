// tubulard under load: register round trips from 8 concurrent clients (a
// separate process), latency percentiles and requests per second, and the
// daemon's resident memory at rest before and after.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Dispatcher } from '../src/dispatcher.js';
import { packageRoot } from '../src/paths.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON = path.join(packageRoot, 'dist/src/daemon/main.js');

export interface DaemonResult {
  available: boolean;
  reason?: string;
  clients?: number;
  requests?: number;
  requestsPerSecond?: number;
  p50Us?: number;
  p99Us?: number;
  maxUs?: number;
  rssAtRestKiB?: number;
  rssAfterLoadKiB?: number;
}

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

function runClient(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.once('error', fail);
    child.once('close', (status) => ok({ status, stdout, stderr }));
  });
}

export interface DaemonOptions { bpffs: string; dir: string; ms: number; clients: number; log: (line: string) => void }

/** Needs an empty bpffs: creates a dispatcher there and removes it again. */
export async function measureDaemon(opts: DaemonOptions): Promise<DaemonResult> {
  if (!existsSync(DAEMON)) return { available: false, reason: `tubulard is not built (${path.relative(packageRoot, DAEMON)} missing)` };
  const socketPath = path.join(opts.dir, 'tubulard.sock');
  Dispatcher.create({ bpffs: opts.bpffs }).close();
  const daemon = spawn(process.execPath, [DAEMON, '--socket', socketPath, '--bpffs', opts.bpffs], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Its first lines say why it did not start; the rest (a line per request) is read and dropped.
  let stderr = '';
  daemon.stderr.on('data', (d) => { if (stderr.length < 64 * 1024) stderr += d; });
  try {
    for (let i = 0; i < 100 && !existsSync(socketPath); i++) {
      if (daemon.exitCode !== null) break;
      await sleep(50);
    }
    if (!existsSync(socketPath)) return { available: false, reason: `tubulard did not start: ${stderr.trim() || 'no socket after 5 s'}` };
    await sleep(1000);
    const rssAtRestKiB = rssKiB(daemon.pid!);
    // Not spawnSync: this process keeps reading the daemon's log while the
    // client runs, as journald would, instead of leaving it to pile up in
    // the daemon's memory.
    const r = await runClient([path.join(here, 'daemon-client.js'), socketPath, String(opts.ms), String(opts.clients)]);
    if (r.status !== 0) return { available: false, reason: `the load client failed: ${r.stderr.trim()}` };
    const load = JSON.parse(r.stdout) as { requests: number; seconds: number; p50Us: number; p99Us: number; maxUs: number };
    await sleep(1000);
    const result: DaemonResult = {
      available: true, clients: opts.clients, requests: load.requests, requestsPerSecond: load.requests / load.seconds,
      p50Us: load.p50Us, p99Us: load.p99Us, maxUs: load.maxUs, rssAtRestKiB, rssAfterLoadKiB: rssKiB(daemon.pid!),
    };
    opts.log(`tubulard: ${result.requestsPerSecond!.toFixed(0)} registers/s, p50 ${load.p50Us.toFixed(0)} µs, p99 ${load.p99Us.toFixed(0)} µs, RSS ${rssAtRestKiB} KiB at rest`);
    return result;
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((ok) => (daemon.exitCode !== null ? ok(null) : daemon.once('exit', ok)));
    Dispatcher.unload({ bpffs: opts.bpffs });
  }
}
