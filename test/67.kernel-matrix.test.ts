// The kernel matrix (scripts/test-kernels, `npm run test:kernels`) is not
// run by `npm test`: it boots kernels under qemu for minutes. What can be
// checked here is checked: every test it names by pattern exists in the
// files it runs (a renamed test would otherwise shrink the subset), the
// docs name its kernels, an unknown kernel is refused, and a kernel that
// cannot be had is a FAILED row with the reason, not a skip.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const script = path.join(repo, 'scripts/test-kernels');
const read = (f: string): string => readFileSync(path.join(repo, f), 'utf8');

/** An array the script defines, as the shell reads it. */
function array(name: string): string[] {
  const defs = read('scripts/test-kernels').match(new RegExp(`^${name}=\\((?:[^)]|\\n)*?\\)$`, 'm'));
  assert.ok(defs, `scripts/test-kernels defines ${name}`);
  const out = execFileSync('bash', ['-c', `${defs[0]}\nprintf '%s\\n' "\${${name}[@]}"`], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

const files = array('SUBSET_FILES');
const patterns = array('SUBSET_TESTS');
const kernels = array('ALL_KERNELS');

test('every pattern of the subset names a test or suite of the files it runs', () => {
  assert.ok(files.length > 0 && patterns.length > 0);
  const names: string[] = [];
  for (const f of files) {
    const src = read(`test/${f}.test.ts`);
    for (const m of src.matchAll(/\b(?:test|describe)\((['"`])((?:\\.|(?!\1).)*)\1/g)) names.push(m[2].replace(/\\(.)/g, '$1'));
  }
  for (const p of patterns) {
    const re = new RegExp(p);
    assert.ok(names.some((n) => re.test(n)), `no test in ${files.join(', ')} matches ${p}`);
  }
});

test('the README and docs/ARCHITECTURE.md name the kernels of the matrix; npm and setup run it', () => {
  assert.deepEqual(kernels, ['5.10', '6.1', '6.12', 'host']);
  const requirements = /^Requirements:.*?(?:\n\n|(?![^]))/ms.exec(read('README.md'))?.[0] ?? '';
  for (const k of kernels.filter((x) => x !== 'host')) {
    assert.match(requirements, new RegExp(`\\b${k.replace('.', '\\.')}\\b`), `README's requirements name ${k}`);
    assert.match(read('docs/ARCHITECTURE.md'), new RegExp(`^\\| \`${k.replace('.', '\\.')}\` `, 'm'), `ARCHITECTURE.md's table has ${k}`);
  }
  assert.match(requirements, /npm run\s+test:kernels/);
  assert.equal(JSON.parse(read('package.json')).scripts['test:kernels'], 'scripts/setup && scripts/test-kernels');
  assert.match(read('scripts/setup'), /\bqemu-system-x86\b/);
});

test('an unknown kernel is refused, naming those there are', () => {
  const r = spawnSync(script, ['--kernel', '4.19'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown kernel 4\.19: one of 5\.10 6\.1 6\.12 host/);
});

test('a kernel that cannot be had is a FAILED row with the reason, and the exit status says so', () => {
  const r = spawnSync(script, ['--kernel', '6.1', '--cache', '/dev/null/cache'], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /^6\.1 +- +FAILED .*cache: mkdir: cannot create directory .\/dev\/null.: Not a directory$/m);
});
