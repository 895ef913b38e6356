// Exit codes and how failures are shown. A usage error means the command
// line is wrong (read --help); an operation failure means the command was
// understood but could not be done (the message says why).
import { TubularError, isSystemError } from '../errors.js';
import { QUOTE_MAX } from '../quote.js';
import type { Output } from './env.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** diff, load-bindings --dry-run and rollback --dry-run with --exit-code: there are differences. */
export const EXIT_DIFFERENT = 3;

/** The command line is wrong: a bad verb, a missing or malformed argument. */
export class UsageError extends Error {
  /** the verb whose --help explains the right usage */
  readonly verb?: string;
  constructor(message: string, verb?: string) {
    super(message);
    this.name = 'UsageError';
    this.verb = verb;
  }
}

/**
 * The verb has printed its whole answer, and that answer calls for this
 * exit status (e.g. check found problems): nothing more is printed.
 */
export class ExitStatus extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`exit status ${status}`);
    this.name = 'ExitStatus';
    this.status = status;
  }
}

/**
 * Runs argument parsing: a TubularError EINVAL it throws (invalid prefix,
 * port, label...) is a usage error.
 */
export function parsing<T>(verb: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TubularError && err.code === 'EINVAL') throw new UsageError(err.message, verb);
    throw err;
  }
}

/** Prints a failure on stderr and returns the exit code for it. */
export function report(err: unknown, stderr: Output): number {
  if (err instanceof ExitStatus) return err.status;
  if (err instanceof UsageError) {
    const hint = err.verb ? ` (see tubectl ${err.verb} --help)` : ' (see tubectl --help)';
    stderr.write(`tubectl: ${err.message}${hint}\n`);
    return EXIT_USAGE;
  }
  if (err instanceof TubularError || isSystemError(err)) {
    stderr.write(`tubectl: ${err.message}\n`);
    return EXIT_FAILED;
  }
  // Not a mistake of the operator: keep the stack for the bug report.
  stderr.write(`tubectl: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  return EXIT_FAILED;
}

/**
 * Commander's messages quote what was typed in single quotes ("unknown
 * command 'x'"), however long: cut each quoted token like quote() does.
 */
export function boundQuotedTokens(message: string): string {
  const long = new RegExp(`'([^'\\n]{${QUOTE_MAX + 1},})'`, 'g');
  return message.replace(long, (_all, token: string) => `'${token.slice(0, QUOTE_MAX)}...' (${token.length} characters)`);
}
