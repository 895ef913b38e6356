// tubular spells its global flags with one dash (-netns, -bpffs); commander
// wants two. Rewrite them, but only before the verb: after it, arguments
// belong to the verb.

const GLOBAL_WITH_VALUE = ['netns', 'bpffs'];

export function normalizeArgv(args: readonly string[]): string[] {
  const out = [...args];
  for (let i = 0; i < out.length; i++) {
    const arg = out[i];
    const m = /^--?([a-z]+)(=.*)?$/.exec(arg);
    if (!m) break; // the verb
    if (GLOBAL_WITH_VALUE.includes(m[1])) {
      if (!arg.startsWith('--')) out[i] = `-${arg}`;
      if (m[2] === undefined) i++; // skip the value
    }
  }
  return out;
}
