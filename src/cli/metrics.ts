// `tubectl metrics <address> <port>`: serves /metrics in the Prometheus text
// format. Each scrape opens the dispatcher read-only, reads every counter
// once, and closes it again, so the server survives unload/load and never
// holds the state open.
import http from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { DestinationStatus } from '../dispatcher.js';
import type { ProgramVariant } from '../kernel.js';
import { TubularError, isSystemError } from '../errors.js';
import { parsePort } from '../protocol.js';
import { quote } from '../quote.js';
import { type Env, withDispatcher } from './env.js';
import { UsageError, parsing } from './errors.js';
import { type ObservedRow, type RejectRow, observedRows, rejectRows } from './rejects.js';

interface Sample {
  loaded: boolean;
  destinations: DestinationStatus[];
  rejects: RejectRow[];
  /** observe bindings and their hits; their sources stay in tubectl sources (one series per source block would be unbounded) */
  observed: ObservedRow[];
  /** the program's variant (full or compat); null when not loaded, or when reading it needs root */
  variant: ProgramVariant | null;
}

const DESTINATION_LABELS = ['label', 'domain', 'protocol'] as const;

/** A fresh registry whose metrics report `sample()` at each scrape. */
export function metricsRegistry(sample: () => Sample, versionInfo: { version: string; node: string }): Registry {
  const registry = new Registry();
  const destinationCounter = (name: string, help: string, value: (d: DestinationStatus) => bigint): void => {
    new Counter({
      name, help, labelNames: DESTINATION_LABELS, registers: [registry],
      collect(this: Counter<typeof DESTINATION_LABELS[number]>) {
        this.reset();
        for (const d of sample().destinations) this.inc({ label: d.label, domain: d.domain, protocol: d.protocol }, Number(value(d)));
      },
    });
  };
  new Gauge({
    name: 'tubular_dispatcher_loaded', help: 'Whether a dispatcher is loaded in the namespace (1) or not (0).', registers: [registry],
    collect(this: Gauge) { this.set(sample().loaded ? 1 : 0); },
  });
  destinationCounter('tubular_destination_lookups_total', 'Connections and datagrams that matched a binding of the destination.', (d) => d.lookups);
  destinationCounter('tubular_destination_misses_total', 'Lookups that found no socket registered for the destination.', (d) => d.misses);
  destinationCounter('tubular_destination_errors_total', 'Lookups that failed to hand the packet to the registered socket.', (d) => d.errors);
  new Gauge({
    name: 'tubular_destination_socket_registered', help: 'Whether a socket is registered for the destination (1) or not (0).',
    labelNames: DESTINATION_LABELS, registers: [registry],
    collect(this: Gauge<typeof DESTINATION_LABELS[number]>) {
      this.reset();
      for (const d of sample().destinations) this.set({ label: d.label, domain: d.domain, protocol: d.protocol }, d.socket === null ? 0 : 1);
    },
  });
  new Gauge({
    name: 'tubular_destination_bindings', help: 'Steer bindings that send traffic to the destination (a reject or observe binding\'s label is not counted).',
    labelNames: DESTINATION_LABELS, registers: [registry],
    collect(this: Gauge<typeof DESTINATION_LABELS[number]>) {
      this.reset();
      for (const d of sample().destinations) this.set({ label: d.label, domain: d.domain, protocol: d.protocol }, d.bindings);
    },
  });
  const bindingCounter = (name: string, help: string, rows: () => ReadonlyArray<{ protocol: string; prefix: string; port: number; count: bigint }>): void => {
    new Counter({
      name, help, labelNames: ['protocol', 'prefix', 'port'], registers: [registry],
      collect(this: Counter<'protocol' | 'prefix' | 'port'>) {
        this.reset();
        for (const r of rows()) this.inc({ protocol: r.protocol, prefix: r.prefix, port: String(r.port) }, Number(r.count));
      },
    });
  };
  bindingCounter('tubular_rejects_total', 'Connections and datagrams refused by a reject binding.',
    () => sample().rejects.map((r) => ({ ...r, count: r.rejected })));
  bindingCounter('tubular_observed_total', 'Connections and datagrams counted by an observe binding (which then let them through).',
    () => sample().observed.map((r) => ({ ...r, count: r.observed })));
  new Gauge({
    name: 'tubular_program_info', help: 'The variant of the program in force (full or compat); no series when reading it needs root.',
    labelNames: ['variant'], registers: [registry],
    collect(this: Gauge<'variant'>) {
      this.reset();
      const { variant } = sample();
      if (variant !== null) this.set({ variant }, 1);
    },
  });
  new Gauge({
    name: 'tubular_build_info', help: 'The version of tubectl serving these metrics.', labelNames: ['version', 'nodeversion'], registers: [registry],
    collect(this: Gauge<'version' | 'nodeversion'>) { this.set({ version: versionInfo.version, nodeversion: versionInfo.node }, 1); },
  });
  return registry;
}

async function readSample(env: Env): Promise<Sample> {
  try {
    return await withDispatcher(env, true, (d) => ({
      loaded: true, destinations: d.destinations(), rejects: rejectRows(d.bindings(), d.rejectCounters()),
      observed: observedRows(d.packedBindings(), (stats) => d.traffic(stats)),
      variant: d.program()?.variant ?? null,
    }));
  } catch (err) {
    if (err instanceof TubularError && err.code === 'ENOTLOADED') return { loaded: false, destinations: [], rejects: [], observed: [], variant: null };
    throw err;
  }
}

export interface MetricsServer {
  /** host:port it listens on */
  address: string;
  port: number;
  close(): Promise<void>;
}

/** The address to listen on: an IP address, or localhost (no other name is looked up). */
function checkAddress(address: string): void {
  if (isIP(address) === 0 && address !== 'localhost') {
    throw new UsageError(`invalid address ${quote(address)}: give an IP address to listen on, e.g. 127.0.0.1, ::1, 0.0.0.0 or ::`, 'metrics');
  }
}

/** Starts the HTTP server; resolves once it listens. */
export async function startMetricsServer(env: Env, address: string, portText: string): Promise<MetricsServer> {
  checkAddress(address);
  const port = parsing('metrics', () => parsePort(portText));
  const { version } = await import('./version-info.js');
  let current: Sample = { loaded: false, destinations: [], rejects: [], observed: [], variant: null };
  const registry = metricsRegistry(() => current, version());
  let scraping = Promise.resolve();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('use GET\n');
      return;
    }
    // One scrape at a time: each reads the dispatcher into `current` and renders it.
    scraping = scraping.then(async () => {
      try {
        current = await readSample(env);
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        env.stderr.write(`tubectl: metrics: ${message}\n`);
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`reading the dispatcher failed: ${message}\n`);
      }
    });
  });
  await new Promise<void>((ok, fail) => {
    // Node's message ends with the address as given: name it bounded instead.
    const failed = (err: Error): void => {
      const code = isSystemError(err) ? err.code : err.name;
      fail(new TubularError('EINVAL', `cannot listen on address ${quote(address)} port ${port}: ${code}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen(port, address, () => { server.off('error', failed); ok(); });
  });
  const bound = server.address() as AddressInfo;
  return {
    address: bound.address,
    port: bound.port,
    close: () => new Promise((ok) => {
      server.close(() => ok());
      server.closeAllConnections();
    }),
  };
}

/** Serves until SIGINT or SIGTERM. */
export async function metrics(env: Env, address: string, port: string): Promise<void> {
  // Usage errors before anything else.
  checkAddress(address);
  parsing('metrics', () => parsePort(port));
  const first = await readSample(env); // fails now, not at the first scrape, when the state is unreadable
  const server = await startMetricsServer(env, address, port);
  const host = server.address.includes(':') ? `[${server.address}]` : server.address;
  env.stdout.write(`serving metrics on http://${host}:${server.port}/metrics\n`);
  if (!first.loaded) env.stderr.write(`tubectl: note: no dispatcher is loaded in ${env.netns} yet: tubular_dispatcher_loaded is 0 until tubectl load\n`);
  await new Promise<void>((ok) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      ok();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
}
