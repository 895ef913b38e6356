// The metric names `tubectl metrics` serves, read from its registry in-process
// (no dispatcher needed), and the tubular_* names a PromQL text refers to: so
// alerting rules and dashboards can be checked against what is really served.
import { metricsRegistry } from '../../src/cli/metrics.js';

export async function servedMetrics(): Promise<Set<string>> {
  const registry = metricsRegistry(() => ({ loaded: false, destinations: [], rejects: [], observed: [], variant: null }), { version: '0', node: process.version });
  return new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
}

/** tubular_* metric names in a PromQL expression or template (a _bucket, _sum or _count suffix is kept). */
export function metricsIn(text: string): string[] {
  return [...text.matchAll(/\btubular_[a-z0-9_]+/g)].map((m) => m[0]);
}
