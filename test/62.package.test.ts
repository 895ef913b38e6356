// scripts/package: the Debian package's contents, control data, conffiles and
// maintainer scripts, man pages, completion and monitoring files, read back
// with dpkg-deb; lintian finds no error. What the package does on a running
// system is test/system's business.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const version = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')).version as string;
const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();

describe('scripts/package', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'tubular-deb-'));
  let deb = '';
  let lint: ReturnType<typeof spawnSync>;
  const field = (name: string): string => execFileSync('dpkg-deb', ['-f', deb, name], { encoding: 'utf8' }).trim();
  const control = (file: string): string => execFileSync('dpkg-deb', ['--info', deb, file], { encoding: 'utf8' });
  let files: Map<string, string>;

  before(() => {
    deb = execFileSync(path.join(repo, 'scripts/package'), ['--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    files = new Map(execFileSync('dpkg-deb', ['--contents', deb], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n').map((l) => {
      const [mode, owner, , , , name, ...rest] = l.split(/\s+/);
      return [name.replace(/^\.\//, '/').replace(/\/$/, ''), `${mode} ${owner}${rest.length ? ` ${rest.join(' ')}` : ''}`];
    }));
    lint = spawnSync('lintian', ['--fail-on', 'error', deb], { encoding: 'utf8' });
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  test('is named tubular_<version>_<arch>.deb and declares its dependencies', () => {
    assert.equal(path.basename(deb), `tubular_${version}_${arch}.deb`);
    assert.equal(field('Package'), 'tubular');
    assert.equal(field('Version'), version);
    assert.equal(field('Architecture'), arch);
    const depends = field('Depends').split(/,\s*/);
    assert.ok(depends.includes('nodejs (>= 20)'), field('Depends'));
    assert.ok(depends.includes('libbpf1'), field('Depends'));
    assert.ok(depends.includes('passwd'), 'the postinst runs groupadd, the postrm groupdel (passwd is not Essential)');
  });

  test('the tool in /usr/lib/tubular, the commands on PATH, the units in /lib/systemd/system, all owned by root', () => {
    for (const f of ['/usr/lib/tubular/dist/src/cli/main.js', '/usr/lib/tubular/dist/src/daemon/main.js', '/usr/lib/tubular/dist/src/launch.cjs',
      '/usr/lib/tubular/dist/bundle/tubectl.cjs', '/usr/lib/tubular/dist/bundle/tubulard.cjs', '/usr/lib/tubular/build/Release/tubular.node',
      '/usr/lib/tubular/build/bpf/dispatcher.o', '/usr/lib/tubular/build/bpf/dispatcher-compat.o', '/usr/lib/tubular/node_modules/zod/package.json', '/usr/lib/tubular/docs/PROTOCOL.md',
      '/lib/systemd/system/tubular-load.service', '/lib/systemd/system/tubulard.socket', '/lib/systemd/system/tubulard.service',
      '/usr/share/doc/tubular/copyright', '/usr/share/lintian/overrides/tubular']) {
      assert.ok(files.has(f), f);
    }
    assert.match(files.get('/usr/bin/tubectl')!, /-> \.\.\/lib\/tubular\/bin\/tubectl$/);
    assert.match(files.get('/usr/bin/tubulard')!, /-> \.\.\/lib\/tubular\/bin\/tubulard$/);
    assert.match(files.get('/usr/lib/tubular/bin/tubectl')!, /^-rwxr-xr-x root\/root/);
    for (const [name, info] of files) {
      assert.match(info, / root\/root/, name);
      assert.doesNotMatch(name, /\/node_modules\/(typescript|fast-check|esbuild|@esbuild|\.bin)(\/|$)/, name); // production dependencies only
      // and of those, what runs: not what builds the addon, nor what only that needs
      assert.doesNotMatch(name, /\/node_modules\/(cmake-js|node-addon-api|node-api-headers|yargs|tar|fs-extra)(\/|$)/, name);
      assert.doesNotMatch(name, /\/node_modules\/.*\/\.[^/]+$/, name); // no dotfiles
      assert.doesNotMatch(name, /^\/usr\/lib\/tubular\/dist\/(test|bench)/, name);
    }
  });

  test('the packaged units run the packaged commands', () => {
    const dir = mkdtempSync(path.join(out, 'x-'));
    execFileSync('dpkg-deb', ['-x', deb, dir]);
    for (const u of ['tubular-load.service', 'tubulard.service', 'tubulard.socket']) {
      const text = readFileSync(path.join(dir, 'lib/systemd/system', u), 'utf8');
      assert.doesNotMatch(text, /\/usr\/local\/|\/opt\//, u);
    }
    assert.match(readFileSync(path.join(dir, 'lib/systemd/system/tubulard.service'), 'utf8'), /^ExecStart=\/usr\/bin\/tubulard /m);
    assert.match(readFileSync(path.join(dir, 'lib/systemd/system/tubular-load.service'), 'utf8'), /^ExecStart=\/usr\/bin\/tubectl .* load --if-not-loaded$/m);
    // the unpacked copy runs on its own
    assert.equal(execFileSync(path.join(dir, 'usr/lib/tubular/bin/tubulard'), ['--version'], { encoding: 'utf8' }).trim(), version);
    const nm = execFileSync('file', ['-L', path.join(dir, 'usr/lib/tubular/build/Release/tubular.node')], { encoding: 'utf8' });
    assert.match(nm, /, stripped/);
  });

  test('man pages, bash completion, and the alerting rules and dashboard in /usr/share', () => {
    for (const f of ['/usr/share/man/man8/tubectl.8.gz', '/usr/share/man/man8/tubulard.8.gz', '/usr/share/bash-completion/completions/tubectl',
      '/usr/share/tubular/tubular-alerts.yml', '/usr/share/tubular/tubular-dashboard.json']) {
      assert.match(files.get(f) ?? '', /^-rw-r--r-- root\/root/, f);
    }
    const dir = mkdtempSync(path.join(out, 'share-'));
    execFileSync('dpkg-deb', ['-x', deb, dir]);
    const page = execFileSync('man', ['-l', path.join(dir, 'usr/share/man/man8/tubectl.8.gz')], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80' } });
    assert.match(page, /^NAME\n\s+tubectl\s+-\s+control/m);
    assert.equal(readFileSync(path.join(dir, 'usr/share/tubular/tubular-alerts.yml'), 'utf8'), readFileSync(path.join(repo, 'packaging/monitoring/tubular-alerts.yml'), 'utf8'));
    assert.match(readFileSync(path.join(dir, 'usr/share/bash-completion/completions/tubectl'), 'utf8'), /^complete -F _tubectl tubectl$/m);
  });

  test('configuration is conffiles: policy, the bindings example and /etc/default/tubular; no bindings.json is shipped', () => {
    assert.deepEqual(control('conffiles').trim().split('\n').sort(),
      ['/etc/default/tubular', '/etc/tubular/bindings.json.example', '/etc/tubular/policy.json']);
    assert.equal(files.has('/etc/tubular/bindings.json'), false); // applying an empty file would remove every binding
  });

  test('the maintainer scripts: group, units the deb-systemd-helper way, upgrade in place, clean removal and purge', () => {
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const text = control(s);
      const dir = mkdtempSync(path.join(out, 'sh-'));
      const r = spawnSync('sh', ['-n', '-c', text], { encoding: 'utf8', cwd: dir });
      assert.equal(r.status, 0, `${s}: ${r.stderr}`);
      assert.match(text, /^#!\/bin\/sh\n/, s);
      assert.match(text, /^set -e$/m, s);
    }
    const postinst = control('postinst');
    assert.match(postinst, /groupadd --system tubular/);
    assert.match(postinst, /deb-systemd-helper --quiet was-enabled "\$unit"/);
    assert.match(postinst, /deb-systemd-helper enable "\$unit"/);
    assert.match(postinst, /deb-systemd-invoke start tubular-load\.service tubulard\.socket/);
    assert.match(postinst, /^\s+tubectl upgrade \|\|/m);
    assert.match(postinst, /^units="tubular-load\.service tubulard\.socket"$/m, 'tubulard.service starts on its socket, never enabled');
    assert.match(control('prerm'), /^\s+tubectl unload >/m);
    // tubectl finds the bpffs in /etc/default/tubular as systemd reads it; sh would read it otherwise (export)
    for (const s of ['postinst', 'prerm']) {
      assert.doesNotMatch(control(s), /\. \/etc\/default\/tubular/, s);
      assert.match(control(s), /^unset TUBULAR_BPFFS$/m, s);
    }
    const postrm = control('postrm');
    assert.match(postrm, /deb-systemd-helper purge \$units/);
    assert.match(postrm, /groupdel tubular/);
  });

  test('lintian reports no error (overrides carry their reasons)', () => {
    assert.equal(lint.status, 0, `${lint.stdout}${lint.stderr}`);
    assert.doesNotMatch(String(lint.stdout), /^E: /m);
    const overrides = readFileSync(path.join(repo, 'packaging/debian/lintian-overrides'), 'utf8').split('\n');
    overrides.forEach((line, i) => {
      if (line.startsWith('tubular:')) assert.match(overrides[i - 1], /^#/, `override without a reason: ${line}`);
    });
  });
  test('the Vagrantfile installs this package (built by scripts/package, its path from stdout) with apt-get, and its provision script parses', () => {
    const vagrantfile = readFileSync(path.join(repo, 'Vagrantfile'), 'utf8');
    const scripts = [...vagrantfile.matchAll(/inline: <<-SHELL\n([\s\S]*?)\n\s*SHELL\n/g)].map((m) => m[1]);
    const tubular = scripts.find((t) => t.includes('scripts/package'));
    assert.ok(tubular, 'a provision step runs scripts/package');
    assert.match(tubular, /deb=\$\(scripts\/package --out \S+\)/);
    assert.match(tubular, /apt-get install -y .*"\$deb"/);
    assert.doesNotMatch(tubular, /scripts\/install/, 'the VM runs what a server runs: the package, not scripts/install');
    for (const t of scripts) {
      const r = spawnSync('bash', ['-n'], { input: t, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    }
    // What the step relies on: scripts/package prints the package's path, and nothing else, on stdout.
    assert.ok(path.isAbsolute(deb) && deb.endsWith('.deb') && !deb.includes('\n'), deb);
  });
});
