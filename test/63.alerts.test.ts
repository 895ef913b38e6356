// packaging/monitoring/tubular-alerts.yml: valid rules (promtool check rules),
// which fire and stay quiet as test/monitoring/tubular-alerts.test.yml says
// (promtool test rules), over metrics tubectl metrics really serves.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { metricsIn, servedMetrics } from './lib/served-metrics.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rules = path.join(repo, 'packaging/monitoring/tubular-alerts.yml');

function promtool(...args: string[]): string {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: repo });
  assert.ok(!r.error, `promtool: ${r.error?.message} (scripts/setup installs it, with Debian's prometheus package)`);
  assert.equal(r.status, 0, `promtool ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('promtool check rules accepts the rules', () => {
  assert.match(promtool('check', 'rules', rules), /SUCCESS: \d+ rules found/);
});

test('promtool test rules: each alert fires when it should and only then', () => {
  assert.match(promtool('test', 'rules', path.join(repo, 'test/monitoring/tubular-alerts.test.yml')), /SUCCESS/);
});

test('every alert is tested, and every metric an alert uses is served', async () => {
  const text = readFileSync(rules, 'utf8');
  const tests = readFileSync(path.join(repo, 'test/monitoring/tubular-alerts.test.yml'), 'utf8');
  const alerts = [...text.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]);
  assert.ok(alerts.length >= 6, alerts.join());
  for (const a of alerts) assert.match(tests, new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${a} is never shown firing`);
  const served = await servedMetrics();
  const used = new Set(metricsIn(text));
  for (const m of used) assert.ok(served.has(m), `${m} is not served by tubectl metrics (it serves ${[...served].join(', ')})`);
  for (const m of ['tubular_dispatcher_loaded', 'tubular_destination_misses_total', 'tubular_destination_errors_total', 'tubular_rejects_total', 'tubular_observed_total']) {
    assert.ok(used.has(m), `no alert on ${m}`);
  }
});
