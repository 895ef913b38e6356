// scripts/install into a throwaway root (--root): the layout, a runnable
// installed copy with only production dependencies, idempotence, and an
// edited policy file kept. Group creation and systemctl are for a real host
// (the Vagrant VM); --root skips them.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const install = path.join(repo, 'scripts/install');

describe('scripts/install --root', () => {
  const dest = mkdtempSync(path.join(tmpdir(), 'tubular-root-'));
  const opt = path.join(dest, 'opt/tubular');
  before(() => {
    execFileSync(install, ['--root', dest], { stdio: ['ignore', 'ignore', 'pipe'] });
  });
  after(() => rmSync(dest, { recursive: true, force: true }));

  test('puts the tool under /opt/tubular and links the commands into /usr/local/bin', () => {
    for (const f of ['bin/tubectl', 'bin/tubulard', 'dist/src/cli/main.js', 'dist/src/daemon/main.js', 'dist/src/launch.cjs',
      'dist/bundle/tubectl.cjs', 'dist/bundle/tubulard.cjs', 'build/Release/tubular.node',
      'build/bpf/dispatcher.o', 'build/bpf/dispatcher-compat.o', 'docs/PROTOCOL.md', 'package.json', 'node_modules/zod/package.json']) {
      assert.ok(existsSync(path.join(opt, f)), f);
    }
    assert.equal(existsSync(path.join(opt, 'dist/test')), false);
    assert.equal(existsSync(path.join(opt, 'node_modules/typescript')), false); // production dependencies only
    assert.equal(existsSync(path.join(opt, 'node_modules/esbuild')), false);
    assert.equal(existsSync(path.join(opt, 'node_modules/cmake-js')), false); // it builds the addon, which comes built
    assert.equal(existsSync(path.join(opt, 'node_modules/yargs')), false); // what only cmake-js needs
    // Each bundle with the code cache made for its build.
    const bundles = readdirSync(path.join(opt, 'dist/bundle'));
    for (const name of ['tubectl', 'tubulard']) assert.ok(bundles.some((f) => new RegExp(`^${name}\\.[0-9a-f]{16}\\.cache$`).test(f)), bundles.join(' '));
    assert.equal(readlinkSync(path.join(dest, 'usr/local/bin/tubectl')), '/opt/tubular/bin/tubectl');
    assert.equal(readlinkSync(path.join(dest, 'usr/local/bin/tubulard')), '/opt/tubular/bin/tubulard');
  });

  test('the installed copy runs on its own', () => {
    const version = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version as string;
    assert.equal(execFileSync(path.join(opt, 'bin/tubulard'), ['--version'], { encoding: 'utf8' }).trim(), version);
    // Through a link, as on PATH (the installed link names /opt/tubular, which this root is not).
    const link = path.join(dest, 'tubectl-link');
    symlinkSync(path.join(opt, 'bin/tubectl'), link);
    assert.match(execFileSync(link, ['version'], { encoding: 'utf8' }), new RegExp(`^tubectl ${version.replace(/\./g, '\\.')} `));
    const help = spawnSync(path.join(opt, 'bin/tubulard'), ['--help'], { encoding: 'utf8' });
    assert.match(help.stdout, /--policy <file>/);
  });

  test('V8 takes each code cache with the flags the command runs node with', () => {
    for (const name of ['tubectl', 'tubulard']) {
      const script = readFileSync(path.join(opt, 'bin', name), 'utf8');
      const exec = /^exec node (.*)"\$here\/\.\.\/dist\/src\/launch\.cjs" (\w+) "\$@"$/m.exec(script);
      assert.ok(exec && exec[2] === name, script);
      const flags = exec[1].split(' ').filter(Boolean);
      const launch = path.join(opt, 'dist/src/launch.cjs');
      const taken = spawnSync(process.execPath, [...flags, launch, '--check', name], { encoding: 'utf8' });
      assert.equal(taken.status, 0, `${name} ${flags.join(' ')}: ${taken.stderr}`);
      // A flag that changes code makes V8 refuse it (and the command compile its bundle at every start).
      const refused = spawnSync(process.execPath, [...flags, '--max-semi-space-size=1', launch, '--check', name], { encoding: 'utf8' });
      assert.equal(refused.status, 1, refused.stderr);
      assert.match(refused.stderr, new RegExp(`refuses the code cache of ${name}`));
    }
  });

  test('installs the three units and a root-only policy; the examples stay in /opt/tubular/systemd', () => {
    assert.deepEqual(readdirSync(path.join(dest, 'etc/systemd/system')).sort(), ['tubular-load.service', 'tubulard.service', 'tubulard.socket']);
    for (const u of ['tubular-load.service', 'tubulard.service', 'tubulard.socket']) {
      assert.equal(readFileSync(path.join(dest, 'etc/systemd/system', u), 'utf8'), readFileSync(path.join(repo, 'systemd', u), 'utf8'));
    }
    assert.ok(existsSync(path.join(opt, 'systemd/example-hello-register.service')));
    assert.deepEqual(JSON.parse(readFileSync(path.join(dest, 'etc/tubular/policy.json'), 'utf8')), { allow: [] });
  });

  test('running it again replaces the copy, keeps an edited policy and leaves no staging directory', () => {
    const policy = path.join(dest, 'etc/tubular/policy.json');
    writeFileSync(policy, '{"allow": [{"group": "web", "labels": ["web-*"]}]}\n');
    writeFileSync(path.join(opt, 'stray-file'), 'from an older install');
    execFileSync(install, ['--root', dest], { stdio: ['ignore', 'ignore', 'pipe'] });
    assert.equal(existsSync(path.join(opt, 'stray-file')), false);
    assert.match(readFileSync(policy, 'utf8'), /web-\*/);
    assert.deepEqual(readdirSync(path.join(dest, 'opt')), ['tubular']);
  });

  test('an unknown option is refused with a hint', () => {
    const r = spawnSync(install, ['--frobnicate'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown option --frobnicate \(use --root DIR or --no-start\)/);
  });
});
