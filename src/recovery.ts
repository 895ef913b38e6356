// What a writer repairs before it changes anything, decided from facts
// read from the pins. Pure, so every crash point's facts can be tested
// without a kernel; Dispatcher gathers the facts and carries out the plan.
//
// Each multi-step operation leaves at most one pending pin, whose fate the
// object in force decides: a pending binding set is adopted when the outer
// map already holds it (the swap happened), dropped otherwise; a pending
// program likewise with the link's program. Anything derived from the
// binding set (filters, unused destinations, stale counters) is
// recomputed when a writer died part-way (the intent mark is set).

export interface RecoveryFacts {
  /** id of the binding set in force (the outer map's slot) */
  setInForce: number;
  /** id of the pinned `binding_set` (undefined: missing) */
  pinnedSet?: number;
  /** id of `binding_set_new` (undefined: none pending) */
  pendingSet?: number;
  /** id of the link's program (undefined: no link pin) */
  linkProgram?: number;
  /** whether the link is still attached to the namespace */
  linkAttached: boolean;
  /** id of `program_new` (undefined: none pending) */
  pendingProgram?: number;
  /** the intent mark a writer sets while it works */
  intent: boolean;
}

export type RecoveryStep =
  | 'adopt-pending-set'     // rename binding_set_new over binding_set
  | 'drop-pending-set'      // unlink binding_set_new
  | 'adopt-pending-program' // rename program_new over program
  | 'drop-pending-program'  // unlink program_new
  | 'reconcile';            // recompute filters, collect destinations, drop stale counters; clear intent

export interface RecoveryPlan {
  steps: RecoveryStep[];
  /** an unload died after detaching the link: only unload may go on */
  halfUnloaded: boolean;
  /** the set in force has no pin this code can find: state it cannot repair */
  unpinnedSet: boolean;
}

export function planRecovery(f: RecoveryFacts): RecoveryPlan {
  const steps: RecoveryStep[] = [];
  let setPinned = f.pinnedSet === f.setInForce;
  if (f.pendingSet !== undefined) {
    if (f.pendingSet === f.setInForce) {
      steps.push('adopt-pending-set');
      setPinned = true;
    } else {
      steps.push('drop-pending-set');
    }
  }
  if (f.pendingProgram !== undefined) {
    steps.push(f.linkProgram !== undefined && f.pendingProgram === f.linkProgram ? 'adopt-pending-program' : 'drop-pending-program');
  }
  // A pending pin means a writer died part-way: derived state may be off too.
  if (f.intent || steps.length > 0) steps.push('reconcile');
  return { steps, halfUnloaded: f.linkProgram === undefined || !f.linkAttached, unpinnedSet: !setPinned };
}
