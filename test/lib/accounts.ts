// Throwaway users and groups for tests that run code as someone else. They
// exist only in the test's own mount namespace: private copies of
// /etc/passwd and /etc/group are bound over the real ones.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface User { name: string; uid: number; gid: number }
export interface Group { name: string; gid: number; members: string[] }

/** Another user may not reach a python3 that PATH finds in root's home. */
export const SYSTEM_PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Adds the accounts; `dir` holds the copies and must be readable by everyone. */
export function addAccounts(dir: string, users: readonly User[], groups: readonly Group[]): void {
  const passwd = readFileSync('/etc/passwd', 'utf8') +
    users.map((u) => `${u.name}:x:${u.uid}:${u.gid}::/nonexistent:/usr/sbin/nologin\n`).join('');
  const group = readFileSync('/etc/group', 'utf8') +
    groups.map((g) => `${g.name}:x:${g.gid}:${g.members.join(',')}\n`).join('');
  for (const [name, text] of [['passwd', passwd], ['group', group]]) {
    const copy = path.join(dir, name);
    writeFileSync(copy, text, { mode: 0o644 });
    execFileSync('mount', ['--bind', copy, `/etc/${name}`]);
  }
}

/** The command line that runs argv as `user`, with the user's primary and supplementary groups. */
export function asUser(user: string, argv: readonly string[]): [string, string[]] {
  const gid = execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim();
  return ['setpriv', ['--reuid', user, '--regid', gid, '--init-groups', ...argv]];
}
