// Running as `nobody`, in a throwaway group of the test's or in none: the
// unprivileged reader and the outsider of the read-access and hostile-user
// tests.
import { execFileSync } from 'node:child_process';

export const NOBODY = 65534;

/** Creates a group (groupdel it when done) and returns its gid. */
export function addGroup(name: string): number {
  execFileSync('groupadd', [name]);
  return Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2]);
}

/** setpriv's command line that runs what follows as nobody, in group `gid`, or in no group for undefined. */
export function asNobody(gid: number | undefined): string[] {
  return ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, gid === undefined ? '--clear-groups' : `--groups=${gid}`];
}
