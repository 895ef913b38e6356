// The benchmark runs in a network and mount namespace of its own: bench.js
// re-executes itself under `unshare`, brings loopback up and mounts a private
// bpffs, so nothing it creates outlives it or touches the host's namespace.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const MARK = 'TUBULAR_BENCH_ISOLATED';

/**
 * In the outer process: runs this script again isolated and exits with its
 * status. (Without deprecation warnings: borrowing a Node socket's fd warns.)
 */
export function isolate(): { bpffs: string } {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (CAP_SYS_ADMIN, CAP_BPF, CAP_NET_ADMIN): run npm run bench as root\n');
    process.exit(1);
  }
  if (process.env[MARK] !== '1') {
    const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', process.execPath, '--no-deprecation', ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, [MARK]: '1' },
    });
    process.exit(r.status ?? 1);
  }
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const bpffs = mkdtempSync(path.join(tmpdir(), 'tubular-bench-bpffs-'));
  execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  process.on('exit', () => {
    try {
      execFileSync('umount', ['-l', bpffs]);
      rmdirSync(bpffs);
    } catch { /* the mount namespace goes away with us anyway */ }
  });
  return { bpffs };
}
