// rollback: put the previous generation back in force, in one update of the
// data plane (Dispatcher.rollback). bind and unbind change the set in force
// only, so edits made since the last replace go with it; the generation
// rolled back from becomes the previous one, so a second rollback returns
// to it, edits included. Guarded like any removal.
import { type ChangeReport, reportChange } from '../change-report.js';
import type { Dispatcher, GenerationRecord } from '../dispatcher.js';
import { TubularError } from '../errors.js';
import { type Verdict, isMassRemoval } from '../guard.js';
import { compareSets } from '../setdiff.js';
import { type ChangeDoc, changeDoc, changeText } from './changes.js';
import { formatAge, isoSecond } from '../duration.js';
import { type Env, tubectlAs, withDispatcher } from './env.js';
import { EXIT_DIFFERENT, EXIT_OK } from './errors.js';
import { type GuardFlags, guardFrom, guardedChange, writeForced } from './guard.js';
import { writeJSON } from './output.js';

export interface RollbackOptions extends GuardFlags {
  /** print what it would do, change nothing */
  dryRun?: boolean;
  /** with --dry-run: exit 3 when the previous generation differs from the one in force */
  exitCode?: boolean;
}

/** rollback --json (and --dry-run --json): the diff document, plus the generations. */
export interface RollbackDoc extends ChangeDoc {
  from: number;
  to: number;
  /** the generation rolled back from had been changed by bind or unbind since it was applied: those edits are in the diff */
  discardsEdits: boolean;
}

interface Outcome {
  from: GenerationRecord;
  to: GenerationRecord;
  report: ChangeReport;
}

/** Whether bind or unbind changed a generation after it was applied: a replace records a digest, they clear it. */
export const edited = (g: GenerationRecord): boolean => g.digest === null && (g.number > 1 || g.bindings > 0);

const noPrevious = (): TubularError => new TubularError('ENOENT',
  'there is no previous generation to roll back to (none was kept since the load, or a replace was interrupted): nothing was changed');

/** What a rollback changed, read after the flip: the generation in force and the one it replaced. */
function swapped(d: Dispatcher): Outcome {
  const { inForce, previous } = d.generations();
  const slot = d.previousSlot();
  if (previous === null || slot === null) throw noPrevious();
  const before = d.packedBindings(slot);
  const now = d.packedBindings();
  return { from: previous, to: inForce, report: reportChange(before, now, compareSets(before, now), (s) => d.traffic(s)) };
}

export async function rollback(env: Env, opts: RollbackOptions = {}): Promise<number> {
  const guard = guardFrom(opts, 'rollback');
  const passed: { verdict?: Verdict } = {};
  const outcome = await withDispatcher(env, opts.dryRun ?? false, (d): Outcome => {
    if (opts.dryRun) {
      const slot = d.previousSlot();
      const { inForce, previous } = d.generations();
      if (slot === null || previous === null) throw noPrevious();
      const current = d.packedBindings();
      const next = d.packedBindings(slot);
      return { from: inForce, to: previous, report: reportChange(current, next, compareSets(current, next), (s) => d.traffic(s)) };
    }
    if (guard.force) {
      // Nothing to decide: flip first, the sooner the better when rolling
      // back an outage, then read what changed (the two generations swapped).
      d.rollback();
      const seen = swapped(d);
      const { removed, inForce } = seen.report;
      passed.verdict = { live: [], mass: isMassRemoval(removed, inForce) ? { removed, inForce } : null };
      return seen;
    }
    let seen: Outcome | undefined;
    const check = guardedChange(guard, { what: 'roll back', retry: `${tubectlAs(env)} rollback --force`, inspect: `${tubectlAs(env)} rollback --dry-run` },
      (verdict, current, next, change, traffic) => {
        passed.verdict = verdict;
        // Under the lock: the generations and the sets are those the flip swaps.
        const { inForce, previous } = d.generations();
        if (previous === null) throw noPrevious();
        seen = { from: inForce, to: previous, report: reportChange(current, next, change, traffic) };
      });
    const { from, to } = d.rollback({ check });
    if (!seen) throw new Error(`rollback from generation ${from} to ${to} ran no change check`);
    return seen;
  });
  const { from, to, report } = outcome;
  if (passed.verdict) writeForced(env, passed.verdict);
  const policy = guard.policy();
  if (env.json) {
    const doc: RollbackDoc = { from: from.number, to: to.number, discardsEdits: edited(from), ...changeDoc(report, policy) };
    writeJSON(env, doc);
  } else {
    const applied = `applied ${isoSecond(to.applied)}, ${formatAge(to.applied, policy.now)}`;
    env.stdout.write(opts.dryRun
      ? `rollback would go from generation ${from.number} to generation ${to.number} (${applied})\n`
      : `rolled back from generation ${from.number} to generation ${to.number} (${applied})\n`);
    env.stdout.write(changeText(report, policy, opts.dryRun ? 'rollback' : undefined));
    if (edited(from)) {
      env.stdout.write(`note: bind or unbind changed generation ${from.number} after it was applied; ` +
        `those edits are among the changes above${opts.dryRun ? ' and would go with it' : ', and a second rollback restores them'}\n`);
    }
    if (!opts.dryRun) env.stdout.write(`generation ${from.number} is now the previous one: tubectl rollback returns to it\n`);
  }
  return opts.dryRun && opts.exitCode && report.rows.length > 0 ? EXIT_DIFFERENT : EXIT_OK;
}
