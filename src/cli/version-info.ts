// The version of this tubectl, read from package.json when asked.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../paths.js';

export interface VersionInfo {
  version: string;
  node: string;
}

export function version(): VersionInfo {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: unknown };
  return { version: typeof pkg.version === 'string' ? pkg.version : 'unknown', node: process.version };
}
