// tubectl(8) and tubulard(8), generated from docs/ by scripts/man-pages: they
// render with groff and man without a warning, carry every section of their
// document, and build/man (what the package ships) is up to date.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const out = mkdtempSync(path.join(tmpdir(), 'tubular-man-'));
after(() => rmSync(out, { recursive: true, force: true }));
execFileSync(path.join(repo, 'scripts/man-pages'), [out]);

const env = { ...process.env, LC_ALL: 'C.UTF-8', MANWIDTH: '80', MAN_KEEP_FORMATTING: '' };

for (const [page, doc, summary] of [
  ['tubectl.8', 'docs/TUBECTL.md', 'tubectl - control the tubular socket dispatcher'],
  ['tubulard.8', 'docs/PROTOCOL.md', 'tubulard - hand the listening sockets of services'],
] as const) {
  describe(page, () => {
    const file = path.join(out, page);

    test('groff renders it without a warning', () => {
      const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', file], { encoding: 'utf8', env });
      assert.ok(!r.error, `groff: ${r.error?.message} (scripts/setup installs groff-base)`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
    });

    test('man -l renders it without a warning: NAME, DESCRIPTION, every heading of the document, SEE ALSO', () => {
      const r = spawnSync('man', ['--warnings', '-l', file], { encoding: 'utf8', env });
      assert.ok(!r.error, `man: ${r.error?.message} (scripts/setup installs man-db)`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      const text = r.stdout.replace(/.\x08/g, '');
      assert.match(text, new RegExp(`^NAME\\n\\s+${summary.replace(/ /g, '\\s+')}`, 'm'));
      assert.match(text, /^DESCRIPTION$/m);
      assert.match(text, /^SEE ALSO$/m);
      for (const [, level, heading] of readFileSync(path.join(repo, doc), 'utf8').matchAll(/^(##|###) (.+)$/gm)) {
        const plain = heading.replace(/`/g, '').replace(/\[([^\]]+)\]\([^)]+\)/g, '$1');
        const shown = level === '##' ? plain.toUpperCase() : plain;
        assert.ok(text.split('\n').some((l) => l.trim() === shown), `heading "${shown}" missing`);
      }
    });

    test('build/man holds the same page (scripts/setup keeps it current)', () => {
      assert.equal(readFileSync(path.join(repo, 'build/man', page), 'utf8'), readFileSync(file, 'utf8'));
    });
  });
}

test('tubulard(8) lists exactly the options tubulard --help lists, with the same defaults', () => {
  const help = execFileSync(process.execPath, [path.join(repo, 'dist/src/daemon/main.js'), '--help'], { encoding: 'utf8', env: { ...env, COLUMNS: '1000' } });
  // Entries start with their flags; commander wraps the rest onto indented lines.
  const entries = help.slice(help.indexOf('Options:')).split(/\n(?=\s+(?:-\w, )?--)/).slice(1).map((e) => e.replace(/\s+/g, ' ').trim());
  const helpOptions = entries.map((e) => /^(?:-\w, )?(--[a-z-]+)(?: <[^>]+>)? (.*)$/.exec(e)!).map((m) => ({ flag: m[1], text: m[2] }));
  const doc = readFileSync(path.join(repo, 'docs/PROTOCOL.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Running tubulard'), doc.indexOf('## Transport'));
  const rows = [...section.matchAll(/^\| `(--[a-z-]+)[^|]*?\|([^|]*)\|/gm)].map((m) => ({ flag: m[1], byDefault: m[2].trim() }));
  // --version and --help share a row.
  const documented = new Set([...rows.map((r) => r.flag), ...(/`--version`, `--help`/.test(section) ? ['--help'] : [])]);
  assert.deepEqual([...documented].sort(), helpOptions.map((o) => o.flag).sort());
  for (const o of helpOptions) {
    const m = /\(default:? ([^)]*?)\)?$/.exec(o.text);
    if (o.flag === '--help' || o.flag === '--version') continue;
    const row = rows.find((r) => r.flag === o.flag);
    assert.ok(row, o.flag);
    if (!m) continue;
    const value = m[1].replace(/^"|"$/g, '').replace(/, at most all but one$/, '');
    assert.ok(row.byDefault.replace(/`/g, '').includes(value.split(',')[0]) || value === 'root only' || value === "this process's",
      `${o.flag}: --help says ${value}, the document ${row.byDefault}`);
  }
});
