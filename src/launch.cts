// How bin/tubectl and bin/tubulard start: each command is one bundled file,
// dist/bundle/<name>.cjs (scripts/bundle makes it with esbuild: the
// project's modules and commander in one file; zod, prom-client and
// ipaddr.js stay in node_modules and load when a command needs them, the
// addon stays a .node file), compiled from the V8 code cache made for it
// at build time. Resolving, reading and compiling some forty modules at
// every start cost tubectl more than the work of a bind.
//
//   node dist/src/launch.cjs <name> [args...]      run the command
//   node dist/src/launch.cjs --cache <name>        write its code cache (scripts/bundle)
//   node [flags] dist/src/launch.cjs --check <name>  exit 1 if V8, run with these
//                                                    flags, refuses its cache (test 61)
//
// The bundle's first line names its build (a digest of its text); the
// cache is dist/bundle/<name>.<build>.cache, so a bundle only ever meets
// the cache made for it. A cache V8 refuses (another Node version, or a
// V8 flag that changes code: most do; bin/tubectl's
// --no-concurrent-recompilation does not) only costs the compile it would
// have saved: 17 ms for tubectl.
import { readFileSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import path from 'node:path';
import { Script } from 'node:vm';

const bundles = path.resolve(__dirname, '../bundle');
const wrap = (source: string): string => `(function (exports, require, module, __filename, __dirname) { ${source}\n});`;

/** The bundle of a command: its file, its text (without the build line) and its cache's file. */
function bundle(name: string): { file: string; source: string; cache: string } {
  if (!/^[a-z]+$/.test(name)) throw new Error(`launch: no command ${JSON.stringify(name)}`);
  const file = path.join(bundles, `${name}.cjs`);
  const text = readFileSync(file, 'utf8');
  const build = /^\/\/ build ([0-9a-f]{16})\n/.exec(text);
  if (!build) throw new Error(`launch: ${file} does not name its build: run scripts/setup`);
  return { file, source: text, cache: path.join(bundles, `${name}.${build[1]}.cache`) };
}

function compile(source: string, file: string, cachedData?: Buffer): Script {
  return new Script(wrap(source), { filename: file, cachedData });
}

function run(name: string, args: string[]): void {
  const { file, source, cache } = bundle(name);
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(cache);
  } catch { /* none: compile */ }
  const fn = compile(source, file, cachedData).runInThisContext() as (...a: unknown[]) => void;
  // As if node had been started on the bundle itself.
  process.argv.splice(1, process.argv.length - 1, file, ...args);
  const m = new Module(file, require.main ?? undefined);
  m.filename = file;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  const req = Module.createRequire(file);
  fn.call(m.exports, m.exports, req, m, file, path.dirname(file));
}

/**
 * Writes the code cache of a bundle with every function compiled, not only
 * those a start would run: compiled eagerly (--no-lazy), then the flag put
 * back, so that the cache carries the flags a normal start has.
 */
function makeCache(name: string): void {
  const { file, source, cache } = bundle(name);
  // node:v8 only here: loading it would cost every start.
  const { setFlagsFromString } = require('node:v8') as typeof import('node:v8');
  setFlagsFromString('--no-lazy');
  const script = compile(source, file);
  setFlagsFromString('--lazy');
  const data = script.createCachedData();
  if (compile(source, file, data).cachedDataRejected) {
    // Not worth failing a build for: the command compiles as it starts.
    process.stderr.write(`launch: V8 refuses the code cache it made for ${file}; ${name} starts without one\n`);
    return;
  }
  writeFileSync(cache, data);
}

/** Whether V8, with the flags this process runs with, takes the code cache of a bundle. */
function cacheTaken(name: string): boolean {
  const { file, source, cache } = bundle(name);
  let data: Buffer;
  try {
    data = readFileSync(cache);
  } catch {
    return false;
  }
  return !compile(source, file, data).cachedDataRejected;
}

const [first, ...rest] = process.argv.slice(2);
if (first === '--cache') {
  for (const name of rest) makeCache(name);
} else if (first === '--check') {
  const refused = rest.filter((name) => !cacheTaken(name));
  if (refused.length > 0) {
    process.stderr.write(`launch: V8 refuses the code cache of ${refused.join(', ')} with these flags\n`);
    process.exitCode = 1;
  }
} else {
  run(first ?? '', rest);
}
