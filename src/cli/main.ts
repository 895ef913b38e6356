#!/usr/bin/env node
// tubectl: the operator's command line. This file only wires verbs to
// commander; each verb's module is imported when that verb runs, so
// `tubectl version` never loads the control plane, zod or prom-client.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { normalizeArgv } from './argv.js';
import { DEFAULT_BPFFS, DEFAULT_NETNS, type Env, type Output } from './env.js';
import { EXIT_OK, EXIT_USAGE, boundQuotedTokens, report } from './errors.js';
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
2 usage error (unknown command, missing or malformed argument).`;

function buildProgram(io: Io): Command {
  const program = new Command('tubectl');
  program
    .description('Control the sk_lookup socket dispatcher of a network namespace (compatible with tubular\'s tubectl).')
    .option('--netns <path>', 'network namespace to act on', DEFAULT_NETNS)
    .option('--bpffs <path>', 'bpffs mount holding the state', DEFAULT_BPFFS)
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
    const g = program.opts<{ netns: string; bpffs: string }>();
    return { ...io, netns: g.netns, bpffs: g.bpffs, json: opts.json ?? false };
  };
  const examples = (text: string): string => `\nExamples:\n${text.replace(/^/gm, '  $ ')}\n`;

  program.command('version').description('print the version').option('--json', 'print one JSON document')
    .action(async (o: { json?: boolean }) => (await import('./status.js')).version(env(o)));

  program.command('status').description('show whether the dispatcher is loaded, its destinations and counters')
    .argument('[label]', 'show only the destinations of this label')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('tubectl status\ntubectl status web\ntubectl status --json'))
    .action(async (label: string | undefined, o: { json?: boolean }) => (await import('./status.js')).status(env(o), label));

  program.command('list').description('list destinations and their sockets (tubular\'s older name, part of status)')
    .option('--json', 'print one JSON document')
    .action(async (o: { json?: boolean }) => (await import('./status.js')).list(env(o)));

  program.command('load').description('load the dispatcher into the namespace')
    .option('--group <name|gid>', 'group allowed to read the state (default: tubular, when it exists)')
    .action(async (o: { group?: string }) => (await import('./loading.js')).load(env(), o));

  program.command('unload').description('detach the dispatcher and remove all its state (bindings, registrations)')
    .action(async () => (await import('./loading.js')).unload(env()));

  program.command('upgrade').description('replace the running program with this version\'s, keeping all state and connections')
    .action(async () => (await import('./loading.js')).upgrade(env()));

  program.command('bind').description('steer a protocol, prefix and port to a label; with --reject, refuse them')
    .usage('[--reject] <label> <protocol> <prefix[/mask]> <port>\n       tubectl bind --reject <protocol> <prefix[/mask]> <port>')
    .argument('<arguments...>', 'label, protocol (tcp|udp), prefix (an address is a /32 or /128), port (0 = every port)')
    .option('--reject', 'refuse matching connections at the transport layer (the label is optional)')
    .addHelpText('after', examples('tubectl bind web tcp 127.0.0.0/24 80\ntubectl bind dns udp ::1 53\ntubectl bind --reject tcp 127.0.0.0/28 25'))
    .action(async (args: string[], o: { reject?: boolean }) => (await import('./binding.js')).bind(env(), args, o));

  program.command('unbind').description('remove a binding')
    .usage('[--reject] <label> <protocol> <prefix[/mask]> <port>\n       tubectl unbind --reject <protocol> <prefix[/mask]> <port>')
    .argument('<arguments...>', 'as given to bind')
    .option('--reject', 'remove a reject binding')
    .addHelpText('after', examples('tubectl unbind web tcp 127.0.0.0/24 80\ntubectl unbind --reject tcp 127.0.0.0/28 25'))
    .action(async (args: string[], o: { reject?: boolean }) => (await import('./binding.js')).unbind(env(), args, o));

  program.command('bindings').description('list bindings, most preferred first')
    .argument('[protocol]', 'tcp, udp or any')
    .argument('[prefix]', 'only bindings inside this prefix')
    .argument('[port]', 'only bindings for this port or for every port')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('tubectl bindings\ntubectl bindings any 127.0.0.0/8\ntubectl bindings udp ::1 443'))
    .action(async (protocol: string | undefined, prefix: string | undefined, port: string | undefined, o: { json?: boolean }) =>
      (await import('./binding.js')).bindings(env(o), [protocol, prefix, port]));

  program.command('load-bindings').description('replace all bindings with those of a JSON file, atomically')
    .argument('<file>', '{"bindings": [{"label": "web", "prefix": "127.0.0.0/24", "port": 80}, ...]}')
    .option('--json', 'print the summary as one JSON document')
    .addHelpText('after', '\nEach entry binds tcp and udp unless it has "protocol": "tcp"|"udp";\n' +
      '"action": "reject" refuses instead (then "label" is optional). The file is\nchecked completely before anything changes.\n')
    .action(async (file: string, o: { json?: boolean }) => (await import('./binding.js')).loadBindings(env(o), file));

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

  return program;
}

/** Runs tubectl with the arguments after the program name; returns the exit status. */
export async function run(args: readonly string[], io: Io): Promise<number> {
  try {
    await buildProgram(io).parseAsync(normalizeArgv(args), { from: 'user' });
    return EXIT_OK;
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
  process.exitCode = await run(process.argv.slice(2), {
    stdout: process.stdout, stderr: process.stderr, getenv: (name) => process.env[name], pid: process.pid,
  });
}
