// The package exports a TypeScript client for Node services (PROTOCOL.md):
// a strict TypeScript program that imports it by the package's name
// type-checks, and a wrong call does not.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = mkdtempSync(path.join(tmpdir(), 'tubular-client-types-'));
after(() => rmSync(dir, { recursive: true, force: true }));

mkdirSync(path.join(dir, 'node_modules'));
symlinkSync(repo, path.join(dir, 'node_modules', 'tubular-ts'));
symlinkSync(path.join(repo, 'node_modules', '@types'), path.join(dir, 'node_modules', '@types'));
writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}\n');

/** tsc's diagnostics for a service's source (empty: it type-checks). */
function check(source: string): string {
  writeFileSync(path.join(dir, 'service.ts'), source);
  const r = spawnSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--target', 'ES2022',
    '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--types', 'node', 'service.ts'], { cwd: dir, encoding: 'utf8' });
  return r.stdout + r.stderr;
}

test('a Node service imports registerSockets and its kin, typed, from the package', () => {
  assert.equal(check(`import { HandoffError, listDestinations, registerSockets, unregisterSocket, type ListedDestination, type RegisteredSocket } from 'tubular-ts';
const got: RegisteredSocket[] = await registerSockets('web', [3, 4], { socketPath: '/run/tubular/tubulard.sock' });
const label: string = got[0].label;
await unregisterSocket(label, 'ipv4', 'tcp');
const listed: ListedDestination[] = await listDestinations();
const n: number = listed.length;
const e: unknown = new Error();
if (e instanceof HandoffError) { const code: string = e.code; void code; }
void n;
`), '');
});

test('a wrong call is a type error', () => {
  assert.match(check(`import { registerSockets } from 'tubular-ts';
await registerSockets('web', 3);
`), /service\.ts\(2,30\): error TS2345/);
});
