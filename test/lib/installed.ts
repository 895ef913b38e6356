// What a test runs as another user (nobody, a throwaway account) must be
// readable by that user, but a checkout may sit where only its owner can go
// (a home directory or a `mktemp -d` is 0700). So those tests run an
// installed copy: once per test process, scripts/install --root puts the
// built tool (dist/src, the addon, the BPF object, the production
// node_modules, package.json) into a world-readable temporary directory,
// with the compiled test helpers in dist/test/lib next to it (they import
// ../../src/...). The directory is removed when the process exits.
//
// Call installed() after isolate(): the outer process of an isolated test
// file only re-executes itself and should install nothing.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test/lib
const repo = path.resolve(here, '../../..');

export interface Installed {
  /** the installed package: ROOT/opt/tubular */
  dir: string;
  /** the installed tubectl entry point, to run with process.execPath */
  tubectl: string;
  /** the installed copy of a compiled test helper, test/lib/NAME.ts */
  helper(name: string): string;
}

let copy: Installed | undefined;

/** Installs once per process and returns the installed paths. */
export function installed(): Installed {
  if (copy) return copy;
  const root = mkdtempSync(path.join(tmpdir(), 'tubular-installed-'));
  process.on('exit', () => rmSync(root, { recursive: true, force: true }));
  execFileSync(path.join(repo, 'scripts/install'), ['--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
  const dir = path.join(root, 'opt/tubular');
  cpSync(here, path.join(dir, 'dist/test/lib'), { recursive: true });
  // mkdtemp makes 0700, and a umask of 077 or a private checkout's modes
  // would carry over: make the whole copy readable, its directories searchable.
  execFileSync('chmod', ['-R', 'a+rX', root]);
  for (let d = tmpdir(); ; d = path.dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new Error(`other users cannot reach ${root}: ${d} is not searchable by them; set TMPDIR to a directory they can traverse`);
    }
    if (d === path.dirname(d)) break;
  }
  copy = {
    dir,
    tubectl: path.join(dir, 'dist/src/cli/main.js'),
    helper: (name) => path.join(dir, 'dist/test/lib', `${name}.js`),
  };
  return copy;
}
