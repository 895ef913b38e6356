// The end-to-end test under a booted systemd (test/system/run): the package in
// a Debian 12 container booted by systemd-nspawn. It never skips: a machine
// that cannot run it (no network for the first root file system, no
// systemd-nspawn) fails this test and says why.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The first run builds the root file system (about 2 minutes, with retries); a cached run takes well under a minute. */
const LIMIT_MS = 20 * 60_000;

test('the package under a booted systemd (test/system/run)', { timeout: LIMIT_MS + 60_000 }, async () => {
  const started = Date.now();
  const child = spawn(path.join(repo, 'test/system/run'), [], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (b: Buffer): void => { log += b.toString(); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const stop = setTimeout(() => {
    child.kill('SIGTERM'); // the script stops the container and removes its files
    setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
  }, LIMIT_MS);
  const code = await new Promise<number | null>((ok) => child.on('close', (c) => ok(c)));
  clearTimeout(stop);
  const lines = log.split('\n').filter((l) => /^(system|rootfs|package): /.test(l));
  process.stderr.write(`${lines.join('\n')}\nsystem test: ran in ${Math.round((Date.now() - started) / 1000)}s, exit ${code}\n`);
  assert.equal(code, 0, `test/system/run failed:\n${log.split('\n').slice(-80).join('\n')}`);
  assert.match(log, /^system: PASSED/m);
});
