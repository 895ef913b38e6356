// Where the state lives when no --bpffs is given: the operator sets it once,
// in /etc/default/tubular (the package's file, which the units read as an
// EnvironmentFile), and tubectl and tubulard follow it, so that a command
// typed by hand acts on the dispatcher the units loaded.
//
//   --bpffs PATH                    the flag wins
//   TUBULAR_BPFFS=PATH (environment)
//   TUBULAR_BPFFS=PATH in /etc/default/tubular
//   /sys/fs/bpf
//
// The file is read as both systemd and sh read it, in the subset where they
// agree: `NAME=value` lines, a value in single or double quotes or bare, `#`
// comments, the last assignment winning. `export NAME=value` is refused:
// sh takes it, but systemd ignores the line, so the units would use another
// path than the one a command typed by hand would. A value that
// relies on shell expansion ($, `, \) or is not an absolute path is refused
// with a sentence, never guessed at; so is a file that is not a regular
// file, or larger than a few lines. Keep this module free of heavy
// imports: every command loads it.
import { TubularError } from './errors.js';
import { DEFAULT_BPFFS } from './netns.js';
import { quote } from './quote.js';
import { readRegularFile } from './read-file.js';

export const DEFAULTS_FILE = '/etc/default/tubular';
export const BPFFS_VARIABLE = 'TUBULAR_BPFFS';

/** The file is a few lines; anything larger is not what the package installed. */
export const DEFAULTS_FILE_MAX_BYTES = 64 * 1024;
const PATH_MAX = 4096;

/** The bpffs path and where it came from (for messages). */
export interface BpffsSetting {
  path: string;
  from: 'environment' | 'file' | 'built-in';
}

/** A value of TUBULAR_BPFFS, checked; `where` names its origin in the message. */
function checkedPath(value: string, where: string): string {
  if (/[$`\\]/.test(value)) {
    throw new TubularError('EINVAL', `${where}: ${BPFFS_VARIABLE}=${quote(value)} uses shell expansion, which tubectl and tubulard do not do: write the path itself, or pass --bpffs PATH`);
  }
  if (!value.startsWith('/') || value.length > PATH_MAX || value.includes('\0')) {
    throw new TubularError('EINVAL', `${where}: ${BPFFS_VARIABLE}=${quote(value)} is not an absolute path: write one (e.g. /run/tubular-bpffs), or pass --bpffs PATH`);
  }
  return value;
}

/** The value of TUBULAR_BPFFS in the text of a defaults file, undefined when it sets none. */
export function bpffsFromDefaults(text: string, file = DEFAULTS_FILE): string | undefined {
  let found: string | undefined;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m || m[2] !== BPFFS_VARIABLE) continue;
    if (m[1]) {
      throw new TubularError('EINVAL', `${file} line ${n + 1}: systemd ignores a line that starts with export, so the units would not see this ${BPFFS_VARIABLE}: ` +
        `write ${BPFFS_VARIABLE}=PATH without export, or pass --bpffs PATH`);
    }
    let value = m[3];
    const q = value[0];
    if (q === '"' || q === "'") {
      if (value.length < 2 || value[value.length - 1] !== q) {
        throw new TubularError('EINVAL', `${file} line ${n + 1}: ${BPFFS_VARIABLE}'s value opens a quote it does not close: write ${BPFFS_VARIABLE}="/path", or pass --bpffs PATH`);
      }
      value = value.slice(1, -1);
    } else if (/\s/.test(value)) {
      throw new TubularError('EINVAL', `${file} line ${n + 1}: ${BPFFS_VARIABLE}'s value has a space outside quotes: quote it, or pass --bpffs PATH`);
    }
    found = checkedPath(value, `${file} line ${n + 1}`);
  }
  return found;
}

/** The text of the defaults file, or undefined when there is none. */
function readDefaults(file: string): string | undefined {
  try {
    return readRegularFile(file, { what: 'defaults file', maxBytes: DEFAULTS_FILE_MAX_BYTES, advice: 'it is meant to hold a few lines: shorten it' });
  } catch (err) {
    if (err instanceof TubularError && err.code === 'ENOENT') return undefined;
    // It says where the state is: the flag does without it.
    if (err instanceof TubularError) throw new TubularError(err.code, `${err.message}; or pass --bpffs PATH`, { cause: err });
    throw err;
  }
}

/** Where the state lives without --bpffs: the environment, then the defaults file, then /sys/fs/bpf. */
export function defaultBpffs(getenv: (name: string) => string | undefined, file = DEFAULTS_FILE): BpffsSetting {
  const env = getenv(BPFFS_VARIABLE);
  if (env !== undefined && env !== '') return { path: checkedPath(env, `the environment`), from: 'environment' };
  const text = readDefaults(file);
  const fromFile = text === undefined ? undefined : bpffsFromDefaults(text, file);
  return fromFile === undefined ? { path: DEFAULT_BPFFS, from: 'built-in' } : { path: fromFile, from: 'file' };
}
