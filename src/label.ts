// Labels name services: "web", "dns-v2", "tls_proxy". They appear in
// destinations, metrics and policy patterns, so they stay plain. Checked by
// hand rather than with zod: every tubectl verb imports this, and start-up
// time is part of the interface.
import { LABEL_MAX_BYTES } from './layout.js';
import { quote } from './quote.js';

export const LABEL_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*$/;

/** Returns an error message for a bad label, or undefined when it is fine. */
export function labelProblem(label: string): string | undefined {
  const why = label.length === 0 ? 'a label must not be empty'
    : Buffer.byteLength(label) > LABEL_MAX_BYTES ? `a label is at most ${LABEL_MAX_BYTES} characters`
      : !LABEL_PATTERN.test(label) ? 'a label starts with a letter, digit or _ and holds only letters, digits and _ . : @ + -'
        : undefined;
  return why && `invalid label ${quote(label)}: ${why}`;
}
