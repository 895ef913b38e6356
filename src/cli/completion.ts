// Bash completion for tubectl, generated from commander's definition of the
// command line (main.ts), so it lists exactly the verbs and options tubectl
// has. scripts/setup writes it to build/completion/tubectl; the package
// installs it. Run: node dist/src/cli/completion.js > tubectl
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { Command, Option } from 'commander';
import { commandDefinition } from './main.js';

/** Words a positional argument of this name takes, or 'file' for file names. */
function argumentWords(name: string, verbs: string[]): string {
  if (name === 'protocol') return 'tcp udp';
  if (name === 'domain') return 'ipv4 ipv6';
  if (name === 'command') return verbs.join(' ');
  if (name === 'file') return '@file';
  // bind and unbind: [label] protocol prefix port (the label is optional with --reject or --observe)
  if (name === 'arguments') return '@binding';
  return '';
}

/** Words the value of an option takes, when they are a fixed few. */
const OPTION_WORDS: Record<string, string[]> = { '--program': ['full', 'compat', 'auto'] };

const flags = (options: readonly Option[]): string[] => options.flatMap((o) => [o.short, o.long].filter((f): f is string => !!f));
const takingValue = (options: readonly Option[]): string[] => options.filter((o) => o.required || o.optional).flatMap((o) => flags([o]));

const HELP = ['-h', '--help'];

export function bashCompletion(program: Command = commandDefinition()): string {
  const verbs = program.commands.map((c) => c.name());
  verbs.push('help');
  const global = [...flags(program.options), ...HELP];
  const globalValued = [...takingValue(program.options), '-netns', '-bpffs'];
  const cases = program.commands.map((c) => {
    const args = c.registeredArguments.map((a) => (a.variadic && a.name() !== 'arguments' ? '' : argumentWords(a.name(), verbs)));
    const choices = c.options.flatMap((o) => (o.long && OPTION_WORDS[o.long] ? [`${o.long}:${OPTION_WORDS[o.long].join(',')}`] : []));
    return [
      `    ${c.name()})`,
      `      opts=${JSON.stringify([...flags(c.options), ...HELP].join(' '))}`,
      `      valued=${JSON.stringify(takingValue(c.options).join(' '))}`,
      `      choices=${JSON.stringify(choices.join(' '))}`,
      `      args=(${args.map((a) => JSON.stringify(a)).join(' ')})`,
      '      ;;',
    ].join('\n');
  });
  cases.push(['    help)', '      opts=""', '      valued=""', '      choices=""', `      args=(${JSON.stringify(verbs.join(' '))})`, '      ;;'].join('\n'));
  return `# bash completion for tubectl: its verbs, their options, and the words some
# arguments and options take (tcp/udp, ipv4/ipv6, file names, program
# variants). Generated from tubectl's
# command-line definition; do not edit.

_tubectl() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local global=${JSON.stringify(global.join(' '))}
  local global_valued=" ${globalValued.join(' ')} "
  local verbs=${JSON.stringify(verbs.join(' '))}
  local i verb= at=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      -*) [[ $global_valued == *" \${COMP_WORDS[i]} "* ]] && ((i++)) ;;
      *) verb=\${COMP_WORDS[i]}; break ;;
    esac
  done
  if [[ -z $verb ]]; then
    case " $global_valued " in
      *" $prev "*) [[ $prev == *netns || $prev == *bpffs ]] && COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$global" -- "$cur"))
    else COMPREPLY=($(compgen -W "$verbs" -- "$cur")); fi
    return
  fi
  local opts valued choices args=() pos=() c
  case $verb in
${cases.join('\n')}
    *) return ;;
  esac
  # which positional argument the cursor is on, skipping options and their values
  for ((i++; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      -*) [[ " $valued " == *" \${COMP_WORDS[i]} "* ]] && ((i++)) ;;
      *) ((at++)); pos+=("\${COMP_WORDS[i]}") ;;
    esac
  done
  if [[ " $valued " == *" $prev "* ]]; then
    for c in $choices; do
      [[ \${c%%:*} == "$prev" ]] && c=\${c#*:} && COMPREPLY=($(compgen -W "\${c//,/ }" -- "$cur"))
    done
    return
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [[ \${args[0]} == @binding ]]; then
    # the protocol, until one is given: after the label, or first (no label)
    [[ " \${pos[*]} " == *" tcp "* || " \${pos[*]} " == *" udp "* ]] || ((at > 1)) || COMPREPLY=($(compgen -W "tcp udp" -- "$cur"))
  elif [[ \${args[at]} == @file ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  elif [[ -n \${args[at]} ]]; then
    COMPREPLY=($(compgen -W "\${args[at]}" -- "$cur"))
  fi
}
complete -F _tubectl tubectl
`;
}

if (process.argv[1] !== undefined && pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url) {
  process.stdout.write(bashCompletion());
}
