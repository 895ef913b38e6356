// Labels name services: "web", "dns-v2", "tls_proxy". They appear in
// destinations, metrics and policy patterns, so they stay plain.
import { z } from 'zod';
import { LABEL_MAX_BYTES } from './layout.js';

export const LABEL_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*$/;

export const labelSchema = z.string()
  .min(1, { message: 'a label must not be empty' })
  .max(LABEL_MAX_BYTES, { message: `a label is at most ${LABEL_MAX_BYTES} characters` })
  .regex(LABEL_PATTERN, { message: 'a label starts with a letter, digit or _ and holds only letters, digits and _ . : @ + -' });

/** Returns an error message for a bad label, or undefined when it is fine. */
export function labelProblem(label: string): string | undefined {
  const r = labelSchema.safeParse(label);
  return r.success ? undefined : `invalid label "${label}": ${r.error.issues[0].message}`;
}
