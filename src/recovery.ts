// What a writer repairs before it changes anything, decided from facts
// read from the pins. Pure, so every crash point's facts can be tested
// without a kernel; Dispatcher gathers the facts and carries out the plan.
//
// Each multi-step operation leaves at most one pending pin per map it puts
// in place, whose fate the object in force decides: a pending inner map is
// adopted when its slot already holds it (the update happened), dropped
// otherwise; a pending program likewise with the link's program. Anything
// derived from the binding sets (filters, unused destinations, generation
// records) is recomputed when a writer died part-way (the intent mark is set).

/** An inner map of a generation slot: what the slot holds, what is pinned. */
export interface InnerFacts {
  /** the pin's name, e.g. binding_set_0 */
  name: string;
  /** id of the map the slot holds */
  inSlot: number;
  /** id of the map pinned as `name` (undefined: missing) */
  pinned?: number;
  /** id of `<name>_new` (undefined: none pending) */
  pending?: number;
}

export interface RecoveryFacts {
  inner: InnerFacts[];
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
  | { do: 'adopt'; name: string }     // rename <name>_new over <name>
  | { do: 'drop'; name: string }      // unlink <name>_new
  | { do: 'adopt-program' }           // rename program_new over program
  | { do: 'drop-program' }            // unlink program_new
  | { do: 'reconcile' };              // recompute what is derived from the sets; clear intent

export interface RecoveryPlan {
  steps: RecoveryStep[];
  /** an unload died after detaching the link: only unload may go on */
  halfUnloaded: boolean;
  /** inner maps a slot holds that no pin holds: state this code cannot repair */
  unpinned: string[];
}

export function planRecovery(f: RecoveryFacts): RecoveryPlan {
  const steps: RecoveryStep[] = [];
  const unpinned: string[] = [];
  for (const m of f.inner) {
    let pinned = m.pinned === m.inSlot;
    if (m.pending !== undefined) {
      if (m.pending === m.inSlot) {
        steps.push({ do: 'adopt', name: m.name });
        pinned = true;
      } else {
        steps.push({ do: 'drop', name: m.name });
      }
    }
    if (!pinned) unpinned.push(m.name);
  }
  if (f.pendingProgram !== undefined) {
    steps.push({ do: f.linkProgram !== undefined && f.pendingProgram === f.linkProgram ? 'adopt-program' : 'drop-program' });
  }
  // A pending pin means a writer died part-way: derived state may be off too.
  if (f.intent || steps.length > 0) steps.push({ do: 'reconcile' });
  return { steps, halfUnloaded: f.linkProgram === undefined || !f.linkAttached, unpinned };
}
