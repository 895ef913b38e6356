// The capabilities this process holds, as the kernel's checks see them: the
// effective set in /proc/self/status. Used to say which capability a refusal
// needs, never to decide what to try.
import { readFileSync } from 'node:fs';

/** What a writer needs besides root, as messages say it (test 41 runs every writing verb with it, on every kernel of the matrix). */
export const WRITER_CAPABILITIES = 'CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; before Linux 5.11 also CAP_SYS_RESOURCE';

export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;
export const CAP_PERFMON = 38;

/** The effective set, as a bit mask (undefined when it cannot be read). */
function effective(status = '/proc/self/status'): bigint | undefined {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(status, 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

const holds = (set: bigint | undefined, bit: number): boolean | undefined => (set === undefined ? undefined : ((set >> BigInt(bit)) & 1n) === 1n);

/** Whether the effective set holds capability `bit` (undefined when it cannot be read). */
export const hasCapability = (bit: number): boolean | undefined => holds(effective(), bit);

/**
 * Whether the verifier treats this process as it treats root: before Linux
 * 6.x it refuses some of the dispatcher's stack use (spilled pointers) to a
 * process without CAP_PERFMON (or CAP_SYS_ADMIN).
 */
export function perfmonCapable(): boolean {
  const set = effective();
  return holds(set, CAP_PERFMON) === true || holds(set, CAP_SYS_ADMIN) === true;
}
