// diff (also spelled load-bindings --dry-run): what loading a bindings file
// would change, changing nothing. The file is validated as load-bindings
// validates it; the set in force is read without the writers' lock, like
// every reading verb, so members of the read group can run it too.
import { indexBindingSet } from '../bindingset.js';
import { reportChange } from '../change-report.js';
import { TubularError } from '../errors.js';
import { MAX_BINDINGS } from '../layout.js';
import { compareSets } from '../setdiff.js';
import { readBindingsFile } from './binding.js';
import { changeDoc, changeText } from './changes.js';
import { type Env, withDispatcher } from './env.js';
import { EXIT_DIFFERENT, EXIT_OK } from './errors.js';
import { type GuardFlags, guardFrom } from './guard.js';
import { writeJSON } from './output.js';

export interface DiffOptions extends GuardFlags {
  /** exit 3 when the file differs from the set in force */
  exitCode?: boolean;
}

/** Prints what load-bindings FILE would change; returns the exit status. */
export async function diff(env: Env, file: string, opts: DiffOptions = {}, verb = 'diff'): Promise<number> {
  const guard = guardFrom(opts, verb);
  const next = await readBindingsFile(env, file);
  // What load-bindings checks besides the file itself.
  indexBindingSet(next);
  if (next.count > MAX_BINDINGS) throw new TubularError('ENOSPC', `${next.count} bindings exceed the capacity of ${MAX_BINDINGS}`);
  const { report, room } = await withDispatcher(env, true, (d) => {
    const current = d.packedBindings();
    return { report: reportChange(current, next, compareSets(current, next), (stats) => d.traffic(stats)), room: d.destinationRoom(next) };
  });
  // Not a change the guard judges: load-bindings refuses it even with --force.
  if (room) env.stderr.write(`tubectl: warning: load-bindings would refuse this file, even with --force: ${room}\n`);
  const policy = guard.policy();
  if (env.json) writeJSON(env, changeDoc(report, policy));
  else env.stdout.write(changeText(report, policy, 'load-bindings'));
  return opts.exitCode && report.rows.length > 0 ? EXIT_DIFFERENT : EXIT_OK;
}
