// Input echoed in messages, bounded. A message says which value was wrong,
// but a 100 MB value must not become a 100 MB message: strings are
// JSON-quoted and cut after `max` characters, with the original length;
// arrays and objects are shown shallowly, also cut.
//
//   quote('web')              -> "web"
//   quote('x'.repeat(1e8))    -> "xx...x..." (100000000 characters)   (64 x shown)
//   quote([1, [2, [3, [4]]]]) -> [1,[2,[3,[...]]]]

/** Characters of a value shown before it is cut. */
export const QUOTE_MAX = 64;

/** Nesting shown before an array or object is abbreviated to [...] or {...}. */
const SHOW_DEPTH = 3;

/** The first `n` characters of s, not splitting a surrogate pair. */
function head(s: string, n: number): string {
  const code = s.charCodeAt(n - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

function quoteString(s: string, max: number): string {
  if (s.length <= max) return JSON.stringify(s);
  return `${JSON.stringify(head(s, max)).slice(0, -1)}..." (${s.length} characters)`;
}

/** Numbers, booleans and null as JSON writes them. */
function scalar(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return typeof v;
}

/** Appends a shallow JSON rendering of v to out until out.length exceeds max. */
function render(v: unknown, depth: number, out: { text: string }, max: number): void {
  if (typeof v === 'string') {
    out.text += quoteString(v, QUOTE_MAX);
    return;
  }
  if (v === null || typeof v !== 'object') {
    out.text += scalar(v);
    return;
  }
  const array = Array.isArray(v);
  if (depth >= SHOW_DEPTH) {
    out.text += array ? '[...]' : '{...}';
    return;
  }
  out.text += array ? '[' : '{';
  let first = true;
  const visit = (key: string | undefined, item: unknown): boolean => {
    if (out.text.length > max) return false;
    if (!first) out.text += ',';
    first = false;
    if (key !== undefined) out.text += `${quoteString(key, QUOTE_MAX)}:`;
    render(item, depth + 1, out, max);
    return true;
  };
  if (array) {
    for (let i = 0; i < v.length; i++) if (!visit(undefined, v[i])) break;
  } else {
    const record = v as Record<string, unknown>;
    for (const key in record) if (!visit(key, record[key])) break;
  }
  out.text += array ? ']' : '}';
}

/** How big an array or object is, for the marker of a cut rendering. */
function size(v: object): string {
  if (Array.isArray(v)) return `an array of ${v.length} item${v.length === 1 ? '' : 's'}`;
  let n = 0;
  for (const _ in v) n++;
  return `an object of ${n} field${n === 1 ? '' : 's'}`;
}

/**
 * A value as messages show it: JSON, at most about `max` characters (cut
 * with "..." and the original size); `nothing` for undefined.
 */
export function quote(value: unknown, max = QUOTE_MAX): string {
  if (typeof value === 'string') return quoteString(value, max);
  if (value === undefined) return 'nothing';
  if (value === null || typeof value !== 'object') return scalar(value);
  const out = { text: '' };
  render(value, 0, out, max);
  return out.text.length <= max ? out.text : `${head(out.text, max)}... (${size(value)})`;
}

/**
 * A path or name as messages show it: as it is when short and plainly
 * printable, inner spaces included (so it reads as typed), else quoted and
 * cut like any value.
 */
export function quoteIfNeeded(text: string, max = 256): string {
  return text.length <= max && /^[!#-~](?:[ !#-~]*[!#-~])?$/.test(text) ? text : quote(text, max);
}
