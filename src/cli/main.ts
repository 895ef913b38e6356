#!/usr/bin/env node
// tubectl: the operator's command line. This file only wires verbs to
// commander; each verb's module is imported when that verb runs, so
// `tubectl version` never loads the control plane, zod or prom-client.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { normalizeArgv } from './argv.js';
import { defaultBpffs } from '../defaults-file.js';
import { DEFAULT_NETNS, type Env, type Output } from './env.js';
import { quoteIfNeeded } from '../quote.js';
import { EXIT_OK, EXIT_USAGE, UsageError, boundQuotedTokens, report } from './errors.js';
import { endQuietlyOnClosedPipe } from './pipe.js';

export interface Io {
  stdout: Output;
  stderr: Output;
  getenv(name: string): string | undefined;
  pid: number;
}

const EPILOG = `
Global options go before the command; tubular's -netns and -bpffs work too.
Exit status: 0 success, 1 the operation failed (the message says why),
2 usage error (unknown command, missing or malformed argument),
3 differences found (diff, --dry-run, only with --exit-code).`;

/** The exit status a verb chose (diff --exit-code); EXIT_OK unless set. */
interface Outcome {
  code: number;
}

function buildProgram(io: Io, outcome: Outcome): Command {
  const program = new Command('tubectl');
  program
    .description('Control the sk_lookup socket dispatcher of a network namespace (compatible with tubular\'s tubectl).')
    .option('--netns <path>', 'network namespace to act on', DEFAULT_NETNS)
    .option('--bpffs <path>', 'bpffs mount holding the state (default: TUBULAR_BPFFS from the environment, then from /etc/default/tubular, then /sys/fs/bpf)')
    .option('--lock-timeout <seconds>', 'how long a change waits for another one in progress', '10')
    .enablePositionalOptions()
    .exitOverride()
    .showHelpAfterError('(tubectl --help lists the commands; tubectl <command> --help explains one)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`tubectl: ${boundQuotedTokens(s.replace(/^error: /, ''))}`),
    })
    .addHelpText('after', EPILOG);

  const env = (opts: { json?: boolean } = {}): Env => {
    const g = program.opts<{ netns: string; bpffs?: string; lockTimeout: string }>();
    // A command a message suggests acts on the same dispatcher as this one.
    const command = ['tubectl', ...(g.netns !== DEFAULT_NETNS ? ['--netns', quoteIfNeeded(g.netns)] : []),
      ...(g.bpffs !== undefined ? ['--bpffs', quoteIfNeeded(g.bpffs)] : [])].join(' ');
    return { ...io, netns: g.netns, bpffs: g.bpffs ?? defaultBpffs(io.getenv).path, lockTimeoutMs: lockTimeoutMs(g.lockTimeout), json: opts.json ?? false, command };
  };
  const examples = (text: string): string => `\nExamples:\n${text.replace(/^/gm, '  $ ')}\n`;
  const liveWindow = (): [string, string] =>
    ['--live-window <duration>', 'a binding is live when it had a hit this recently: 30s, 10m, 2h, 1h30m; 0 turns the check off (default 10m)'];
  /** --exit-code means something only for a dry run. */
  const dryRunOnly = (verb: string, o: { dryRun?: boolean; exitCode?: boolean }): void => {
    if (o.exitCode && !o.dryRun) throw new UsageError('--exit-code goes with --dry-run', verb);
  };

  program.command('version').description('print the version').option('--json', 'print one JSON document')
    .action(async (o: { json?: boolean }) => (await import('./status.js')).version(env(o)));

  program.command('status').description('show whether the dispatcher is loaded, its generations, destinations and counters')
    .argument('[label]', 'show only the destinations of this label')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('tubectl status\ntubectl status web\ntubectl status --json'))
    .action(async (label: string | undefined, o: { json?: boolean }) => (await import('./status.js')).status(env(o), label));

  program.command('list').description('list destinations and their sockets (tubular\'s older name, part of status)')
    .option('--json', 'print one JSON document')
    .action(async (o: { json?: boolean }) => (await import('./status.js')).list(env(o)));

  const programHelp = 'which program: full (Linux 5.17), compat (Linux 5.10: no bpf_loop) or auto';
  program.command('load').description('load the dispatcher into the namespace')
    .option('--group <name|gid>', 'group allowed to read the state (default: tubular, when it exists)')
    .option('--if-not-loaded', 'succeed, changing nothing, when a dispatcher is already loaded (for boot units)')
    .option('--program <variant>', `${programHelp} (default: full when the kernel has what it needs)`)
    .addHelpText('after', examples('tubectl load\ntubectl load --program compat'))
    .action(async (o: { group?: string; ifNotLoaded?: boolean; program?: string }) => (await import('./loading.js')).load(env(), o));

  program.command('unload').description('detach the dispatcher and remove all its state (bindings, registrations)')
    .action(async () => (await import('./loading.js')).unload(env()));

  program.command('upgrade').description('replace the running program with this version\'s, keeping all state and connections')
    .option('--program <variant>', `${programHelp} (default: the variant in force)`)
    .addHelpText('after', examples('tubectl upgrade\ntubectl upgrade --program compat\ntubectl upgrade --program full'))
    .action(async (o: { program?: string }) => (await import('./loading.js')).upgrade(env(), o));

  program.command('bind').description('steer a protocol, prefix and port to a label; with --reject, refuse them; with --observe, count them')
    .usage('[--reject|--observe] <label> <protocol> <prefix[/mask]> <port>\n       tubectl bind --reject|--observe <protocol> <prefix[/mask]> <port>')
    .argument('<arguments...>', 'label, protocol (tcp|udp), prefix (an address is a /32 or /128), port (0 = every port)')
    .option('--reject', 'refuse matching connections at the transport layer (the label is optional)')
    .option('--observe', 'count matching connections and where they come from, and change nothing about where they go (the label is optional)')
    .option(...liveWindow())
    .addHelpText('after', '\nReplacing a binding that carried traffic within the live window with another\n' +
      'label, or with reject, proceeds and says so on stderr.\n' +
      examples('tubectl bind web tcp 127.0.0.0/24 80\ntubectl bind dns udp ::1 53\ntubectl bind --observe tcp 127.0.0.128/25 80\ntubectl bind --reject tcp 127.0.0.0/28 25'))
    .action(async (args: string[], o: { reject?: boolean; observe?: boolean; liveWindow?: string }) => (await import('./binding.js')).bind(env(), args, o));

  program.command('unbind').description('remove a binding')
    .usage('[--reject|--observe] <label> <protocol> <prefix[/mask]> <port>\n       tubectl unbind --reject|--observe <protocol> <prefix[/mask]> <port>')
    .argument('<arguments...>', 'as given to bind')
    .option('--reject', 'remove a reject binding')
    .option('--observe', 'remove an observe binding')
    .option('--force', 'remove it even if it carried traffic within the live window')
    .option(...liveWindow())
    .addHelpText('after', '\nA binding that carried traffic within the live window is not removed without --force.\n' +
      examples('tubectl unbind web tcp 127.0.0.0/24 80\ntubectl unbind --reject tcp 127.0.0.0/28 25\ntubectl unbind --force web tcp 127.0.0.0/24 80'))
    .action(async (args: string[], o: { reject?: boolean; observe?: boolean; force?: boolean; liveWindow?: string }) => (await import('./binding.js')).unbind(env(), args, o));

  program.command('bindings').description('list bindings, most preferred first')
    .argument('[protocol]', 'tcp, udp or any')
    .argument('[prefix]', 'only bindings inside this prefix')
    .argument('[port]', 'only bindings for this port or for every port')
    .option('--stats', 'add the columns hits and last hit (--json always carries hits and lastHit)')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('tubectl bindings\ntubectl bindings any 127.0.0.0/8\ntubectl bindings udp ::1 443\ntubectl bindings --stats'))
    .action(async (protocol: string | undefined, prefix: string | undefined, port: string | undefined, o: { json?: boolean; stats?: boolean }) =>
      (await import('./binding.js')).bindings(env(o), [protocol, prefix, port], o));

  type ChangeFlags = { json?: boolean; dryRun?: boolean; exitCode?: boolean; force?: boolean; liveWindow?: string };
  program.command('load-bindings').description('replace all bindings with those of a JSON file, atomically')
    .argument('<file>', '{"bindings": [{"label": "web", "prefix": "127.0.0.0/24", "port": 80}, ...]}')
    .option('--dry-run', 'print what it would change, change nothing (same as tubectl diff)')
    .option('--exit-code', 'with --dry-run: exit 3 when there are differences')
    .option('--force', 'apply it even if it withdraws or redirects live bindings, or removes most of them')
    .option(...liveWindow())
    .option('--json', 'print the summary as one JSON document')
    .addHelpText('after', '\nEach entry binds tcp and udp unless it has "protocol": "tcp"|"udp";\n' +
      '"action": "reject" refuses instead (then "label" is optional). The file is\nchecked completely before anything changes.\n\n' +
      'Refused without --force: removing a binding, giving it another label or turning\nit into reject ' +
      'while it carried traffic within the live window; removing more\nthan half of the bindings in force, and more than 100.\n' +
      examples('tubectl load-bindings bindings.json\ntubectl load-bindings --dry-run bindings.json\ntubectl load-bindings --force bindings.json'))
    .action(async (file: string, o: ChangeFlags) => {
      dryRunOnly('load-bindings', o);
      if (o.dryRun) outcome.code = await (await import('./diff.js')).diff(env(o), file, o, 'load-bindings');
      else await (await import('./binding.js')).loadBindings(env(o), file, o);
    });

  program.command('diff').description('print what load-bindings FILE would change, changing nothing')
    .argument('<file>', 'a bindings file, as load-bindings takes it')
    .option('--exit-code', 'exit 3 when there are differences (0 when there are none)')
    .option(...liveWindow())
    .option('--json', 'print one JSON document')
    .addHelpText('after', '\nLists the bindings added, removed and changed (label or action), most preferred\n' +
      'first, each with its hits and last hit, then a one-line summary.\n' +
      examples('tubectl diff bindings.json\ntubectl diff --exit-code bindings.json || echo "would change"'))
    .action(async (file: string, o: ChangeFlags) => {
      outcome.code = await (await import('./diff.js')).diff(env(o), file, o);
    });

  program.command('rollback').description('put the previous generation of bindings back in force, atomically')
    .option('--dry-run', 'print what it would change, change nothing')
    .option('--exit-code', 'with --dry-run: exit 3 when there are differences')
    .option('--force', 'roll back even if it withdraws or redirects live bindings, or removes most of them')
    .option(...liveWindow())
    .option('--json', 'print one JSON document')
    .addHelpText('after', '\nbind and unbind change the generation in force only: a rollback takes their\n' +
      'edits away with it, and a second rollback brings them back.\n' +
      examples('tubectl rollback --dry-run\ntubectl rollback\ntubectl rollback --force'))
    .action(async (o: ChangeFlags) => {
      dryRunOnly('rollback', o);
      outcome.code = await (await import('./rollback.js')).rollback(env(o), o);
    });

  program.command('register').description('register the sockets passed by systemd socket activation')
    .argument('<label>', 'the label whose bindings the sockets serve')
    .addHelpText('after', '\nReads LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES; sockets named like the label are\n' +
      'chosen when there are any, else all. systemd passes sockets only to ExecStart=, so\n' +
      'run it from a oneshot unit of its own, ordered before the service:\n\n' +
      '  [Service]\n  Type=oneshot\n  RemainAfterExit=yes\n  Sockets=web.socket\n  ExecStart=/usr/bin/tubectl register web\n')
    .action(async (label: string) => (await import('./register.js')).register(env(), label));

  program.command('register-pid').description('register the socket a running process listens on (TCP) or is bound to (UDP)')
    .argument('<pid>', 'process id, or a file holding one')
    .argument('<label>').argument('<protocol>', 'tcp or udp').argument('<ip>', 'the address the socket is bound to (a wildcard-bound socket matches too)')
    .argument('<port>')
    .addHelpText('after', examples('tubectl register-pid 1234 web tcp 127.0.0.1 8080\ntubectl register-pid /run/dns.pid dns udp ::1 53'))
    .action(async (pid: string, label: string, protocol: string, ip: string, port: string) =>
      (await import('./register.js')).registerPid(env(), [pid, label, protocol, ip, port]));

  program.command('unregister').description('remove the socket of a label, domain and protocol')
    .argument('<label>').argument('<domain>', 'ipv4 or ipv6').argument('<protocol>', 'tcp or udp')
    .addHelpText('after', examples('tubectl unregister web ipv4 tcp'))
    .action(async (label: string, domain: string, protocol: string) =>
      (await import('./register.js')).unregister(env(), label, domain, protocol));

  program.command('metrics').description('serve Prometheus metrics over HTTP at /metrics until SIGINT or SIGTERM')
    .argument('<address>', 'address to listen on').argument('<port>', 'port to listen on (0: any free port)')
    .addHelpText('after', examples('tubectl metrics 127.0.0.1 9090'))
    .action(async (address: string, port: string) => (await import('./metrics.js')).metrics(env(), address, port));

  program.command('check').description('find bindings and sockets that refuse or misroute traffic; exit 1 if there are any')
    .option('--json', 'print one JSON document')
    .option('--live-window <duration>', 'a binding with a hit this recently is live (e.g. 30s, 10m, 2h; 0: leave traffic out)', '10m')
    .addHelpText('after', '\nFinds blackholes (steer bindings whose label has no socket for their family and\n' +
      'protocol), unreachable bindings (beaten everywhere by others), reject bindings in front\n' +
      'of live steer bindings, and registered sockets no binding leads to. Exit status: 0\n' +
      'when there is nothing to report, 1 when there is (or check failed), 2 usage error.\n' +
      examples('tubectl check\ntubectl check --json --live-window 1h'))
    .action(async (o: { json?: boolean; liveWindow: string }) => (await import('./check.js')).check(env(o), { liveWindow: o.liveWindow }));

  program.command('explain').description('where a connection to an address and port goes, and why; checked against the loaded program')
    .argument('<protocol>', 'tcp or udp').argument('<address>', 'an IPv4 or IPv6 address').argument('<port>', '0-65535')
    .option('--json', 'print one JSON document')
    .addHelpText('after', '\nLists the matching bindings, most preferred first, and why each loses; the destination\n' +
      'and its sockets, with the processes holding them; then asks the loaded program the same\n' +
      'question (BPF_PROG_TEST_RUN, needs root) and exits 1 if it answers otherwise. The\n' +
      'question is not counted as traffic.\n' +
      examples('tubectl explain tcp 127.0.0.1 80\ntubectl explain udp ::1 53 --json'))
    .action(async (protocol: string, address: string, port: string, o: { json?: boolean }) =>
      (await import('./explain.js')).explain(env(o), protocol, address, port));

  program.command('sources').description('where the traffic of observe and reject bindings comes from: hits per source block')
    .argument('[protocol]', 'with prefix and port: only this binding (tcp or udp)')
    .argument('[prefix]', 'the binding\'s prefix')
    .argument('[port]', 'the binding\'s port (0 = every port)')
    .option('--top <n>', 'source blocks shown per binding, most active first: 1-1000 (default 10)')
    .option('--reset', 'clear the sample of every binding, to measure a fresh window (root; hit counts stay)')
    .option('--json', 'print one JSON document')
    .addHelpText('after', '\nSources are sampled per IPv4 /24 and IPv6 /48, for observe and reject bindings only,\n' +
      `in a table of bounded size: when it is full, the blocks seen least recently make room.\n` +
      'Bindings are listed busiest first.\n' +
      examples('tubectl sources\ntubectl sources --top 50 tcp 127.0.0.128/25 80\ntubectl sources --json\ntubectl sources --reset'))
    .action(async (protocol: string | undefined, prefix: string | undefined, port: string | undefined, o: { json?: boolean; top?: string; reset?: boolean }) =>
      (await import('./sources.js')).sources(env(o), [protocol, prefix, port], o));

  return program;
}

/** The command-line definition alone, with its verbs, arguments and options (to generate shell completion from). */
export function commandDefinition(): Command {
  const discard: Output = { write: () => true };
  return buildProgram({ stdout: discard, stderr: discard, getenv: () => undefined, pid: 0 }, { code: EXIT_OK });
}

/** Seconds (decimal, at most a day) as milliseconds; a usage error otherwise. */
function lockTimeoutMs(text: string): number {
  if (!/^\d{1,5}(\.\d{1,3})?$/.test(text) || Number(text) > 86400) {
    throw new UsageError(`--lock-timeout takes seconds, from 0 to 86400 (e.g. 10 or 0.5), not ${JSON.stringify(text.slice(0, 20))}`);
  }
  return Math.round(Number(text) * 1000);
}

/** Runs tubectl with the arguments after the program name; returns the exit status. */
export async function run(args: readonly string[], io: Io): Promise<number> {
  const outcome: Outcome = { code: EXIT_OK };
  try {
    await buildProgram(io, outcome).parseAsync(normalizeArgv(args), { from: 'user' });
    return outcome.code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    return report(err, io.stderr);
  }
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  endQuietlyOnClosedPipe(process.stdout);
  endQuietlyOnClosedPipe(process.stderr);
  void run(process.argv.slice(2), {
    stdout: process.stdout, stderr: process.stderr, getenv: (name) => process.env[name], pid: process.pid,
  }).then((code) => { process.exitCode = code; });
}
