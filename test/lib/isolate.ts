// Integration tests run in a network namespace and a mount namespace of
// their own: the test file re-executes itself under `unshare`, so whatever it
// creates (sockets, bpffs pins, links) disappears with the process and the
// host's namespace is never touched.
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const MARK = 'TUBULAR_TEST_ISOLATED';

export const isRoot = process.getuid?.() === 0;

/**
 * Call at the top of an integration test file. In the outer process it runs
 * the file again inside fresh namespaces and exits with its status; inside,
 * it brings up loopback and mounts a private bpffs, whose path it returns.
 */
export function isolate(): { bpffs: string } {
  if (!isRoot) throw new Error('integration tests need root (CAP_SYS_ADMIN, CAP_BPF, CAP_NET_ADMIN): run npm test as root');
  if (process.env[MARK] !== '1') {
    const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, [MARK]: '1' },
    });
    process.exit(r.status ?? 1);
  }
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const bpffs = mkdtempSync(path.join(tmpdir(), 'tubular-bpffs-'));
  execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  process.on('exit', () => {
    try {
      execFileSync('umount', [bpffs]);
      rmdirSync(bpffs);
    } catch { /* the mount namespace goes away with us anyway */ }
  });
  return { bpffs };
}
