#!/usr/bin/env node
// tubulard: services hand their listening sockets to the dispatcher over a
// Unix SOCK_SEQPACKET socket (docs/PROTOCOL.md). The daemon checks who sends,
// registers the sockets and gets out of the way: registered sockets live in
// the pinned socket map, so traffic never depends on this process.
import { lstatSync, readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { defaultBpffs } from '../defaults-file.js';
import { packageRoot } from '../paths.js';
import { MAX_CLIENTS_PER_USER, ROOT_CLIENTS, defaultRootClients } from './admission.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from './lock-wait.js';
import { MAX_DESTINATIONS_PER_USER } from './register.js';
import { activatedListener, type Listener, pathListener } from './listener.js';
import { sdNotify } from './notify.js';
import { DEFAULT_POLICY, loadPolicy, type Policy, resolveId } from './policy.js';
import { Server } from './server.js';
import { type HandlerContext, dispatcherOf } from './context.js';
import { DispatcherHandle } from './state.js';
import { DEFAULT_SOCKET } from './wire.js';
import { Writes } from './writes.js';

interface Options {
  socket: string;
  policy?: string;
  netns?: string;
  bpffs?: string;
  group?: string;
  idleTimeout: number;
  maxClients: number;
  rootClients?: number;
  maxClientsPerUser: number;
  maxDestinationsPerUser: number;
  lockTimeout: number;
}

// The server logs a line per request: the lines of one turn of the event
// loop (the requests answered together) go out in one write, after it.
// Any other line first sends those, so the log keeps its order.
let pending: string[] = [];
const flushLog = (): void => {
  if (pending.length === 0) return;
  const text = `${pending.join('\n')}\n`;
  pending = [];
  process.stderr.write(text);
};
const requestLog = (line: string): void => {
  if (pending.length === 0) setImmediate(flushLog);
  pending.push(line);
};
const log = (line: string): void => {
  flushLog();
  process.stderr.write(`${line}\n`);
};

const positive = (what: string, integer: boolean) => (text: string): number => {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new InvalidArgumentError(`"${text}" is not a positive ${integer ? 'integer' : 'number'} of ${what}`);
  }
  return v;
};

const count = (what: string, integer = true) => (text: string): number => {
  const v = Number(text);
  if (!(integer ? /^\d+$/ : /^\d+(\.\d+)?$/).test(text) || !Number.isFinite(v)) {
    throw new InvalidArgumentError(`"${text}" is not a number of ${what} (0 or more)`);
  }
  return v;
};

function version(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function run(opts: Options): void {
  let policy: Policy = opts.policy ? loadPolicy(path.resolve(opts.policy)) : DEFAULT_POLICY;
  const gid = opts.group === undefined ? undefined : resolveId('group', /^\d+$/.test(opts.group) ? Number(opts.group) : opts.group);
  const bpffs = opts.bpffs ?? defaultBpffs((name) => process.env[name]).path;
  const dispatcher = new DispatcherHandle({ netns: opts.netns, bpffs });
  try {
    dispatcher.get();
  } catch (err) {
    log(`warning: ${(err as Error).message} (requests fail with ENOTLOADED until then)`);
  }
  const rootClients = opts.rootClients ?? defaultRootClients(opts.maxClients);
  if (rootClients >= opts.maxClients) {
    throw new Error(`--root-clients ${rootClients} leaves no connection of --max-clients ${opts.maxClients} for other users: make it smaller`);
  }
  const listener: Listener = activatedListener() ?? pathListener(opts.socket, gid);
  const ctx: HandlerContext = {
    dispatcher,
    writes: new Writes(() => dispatcherOf(ctx)),
    policy: () => policy,
    version: version(),
    lockTimeoutMs: Math.round(opts.lockTimeout * 1000),
    maxDestinationsPerUser: opts.maxDestinationsPerUser,
  };
  const server = new Server(listener, ctx, {
    idleTimeoutMs: Math.round(opts.idleTimeout * 1000),
    maxClients: opts.maxClients,
    rootClients,
    maxClientsPerUser: opts.maxClientsPerUser,
    log: requestLog,
  });
  server.start();
  log(`listening on ${listener.description}, policy: ${policy.source}`);
  sdNotify(`READY=1\nSTATUS=listening on ${listener.description}\nMAINPID=${process.pid}`);

  process.on('SIGHUP', () => {
    if (!opts.policy) {
      log('SIGHUP: no --policy file, nothing to reload');
      return;
    }
    try {
      policy = loadPolicy(path.resolve(opts.policy));
      log(`SIGHUP: reloaded policy ${policy.source} (${policy.rules.length} rules)`);
    } catch (err) {
      log(`SIGHUP: kept the previous policy: ${(err as Error).message}`);
    }
  });
  const stop = (signal: string): void => {
    sdNotify('STOPPING=1');
    log(`${signal}: stopping (registered sockets stay in the dispatcher)`);
    server.close();
    try { rmSocket(listener); } catch { /* already gone */ }
    dispatcher.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Removes the socket file this process created, not one a newer daemon put there. */
function rmSocket(listener: Listener): void {
  if (listener.path && lstatSync(listener.path).ino === listener.ino) unlinkSync(listener.path);
}

const program = new Command('tubulard')
  .description('hand listening sockets to the tubular dispatcher over a Unix socket (see docs/PROTOCOL.md)')
  .option('--socket <path>', 'Unix socket to listen on (unless systemd passes one)', DEFAULT_SOCKET)
  .option('--policy <file>', 'JSON policy: which users and groups may register which labels (default: root only)')
  .option('--netns <path>', 'network namespace of the dispatcher (default: this process\'s)')
  .option('--bpffs <path>', 'bpffs mount holding the dispatcher state (default: TUBULAR_BPFFS from the environment, then from /etc/default/tubular, then /sys/fs/bpf)')
  .option('--group <name|gid>', 'group owning the socket (mode 0660)')
  .option('--idle-timeout <seconds>', 'drop a client idle this long', positive('seconds', false), 10)
  .option('--max-clients <n>', 'refuse clients beyond this many with EBUSY', positive('clients', true), 64)
  .option('--root-clients <n>', `how many of --max-clients only root may take (default ${ROOT_CLIENTS}, at most all but one)`, count('clients'))
  .option('--max-clients-per-user <n>', 'connections one user other than root may hold', positive('clients', true), MAX_CLIENTS_PER_USER)
  .option('--max-destinations-per-user <n>', 'registered destinations one user other than root may hold', count('destinations'), MAX_DESTINATIONS_PER_USER)
  .option('--lock-timeout <seconds>', 'how long a request waits for another writer (e.g. tubectl) to finish, then EBUSY',
    count('seconds', false), DEFAULT_LOCK_TIMEOUT_MS / 1000)
  .version(version())
  .action((opts: Options) => {
    try {
      run(opts);
    } catch (err) {
      log(`tubulard: ${(err as Error).message}`);
      process.exit(1);
    }
  });

program.parse();
