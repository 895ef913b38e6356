// packaging/monitoring/tubular-dashboard.json: a Grafana dashboard whose
// every query is valid PromQL (promtool check rules, with Grafana's variables
// filled in) over metrics tubectl metrics really serves, and which shows each
// of them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { metricsIn, servedMetrics } from './lib/served-metrics.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string }[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

const dashboard = JSON.parse(readFileSync(path.join(repo, 'packaging/monitoring/tubular-dashboard.json'), 'utf8')) as Dashboard;
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

test('is a dashboard of panels with queries, unique ids, laid out on the 24-column grid without overlap', () => {
  assert.equal(dashboard.uid, 'tubular');
  assert.ok(panels.length >= 8, String(panels.length));
  assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length);
  const taken = new Set<string>();
  for (const p of dashboard.panels) {
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, p.title);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        assert.ok(!taken.has(`${i},${j}`), `${p.title} overlaps another panel at ${i},${j}`);
        taken.add(`${i},${j}`);
      }
    }
    if (p.type !== 'row') assert.ok(p.targets && p.targets.length > 0, `${p.title} has no query`);
  }
});

test('every query refers only to metrics tubectl metrics serves, and every served metric is shown', async () => {
  const served = await servedMetrics();
  const queries = [...exprs, ...dashboard.templating.list.filter((v) => v.type === 'query')
    .map((v) => ({ panel: `variable ${v.name}`, expr: typeof v.query === 'string' ? v.query : (v.query as { query: string }).query }))];
  const shown = new Set<string>();
  for (const { panel, expr } of queries) {
    const used = metricsIn(expr);
    assert.ok(used.length > 0, `${panel}: ${expr} uses no tubular metric`);
    for (const m of used) {
      assert.ok(served.has(m), `${panel}: ${m} is not served by tubectl metrics (it serves ${[...served].join(', ')})`);
      shown.add(m);
    }
  }
  assert.deepEqual([...served].filter((m) => !shown.has(m)), []);
});

test('every query is valid PromQL (checked by promtool, with $instance and $__rate_interval filled in)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tubular-dashboard-'));
  try {
    const rules = ['groups:', '  - name: dashboard', '    rules:', ...exprs.flatMap((e, i) => [
      `      - record: dashboard:query${i}`,
      `        expr: ${JSON.stringify(e.expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*'))}`,
    ])].join('\n');
    writeFileSync(path.join(dir, 'queries.yml'), `${rules}\n`);
    const r = spawnSync('promtool', ['check', 'rules', path.join(dir, 'queries.yml')], { encoding: 'utf8' });
    assert.ok(!r.error, `promtool: ${r.error?.message} (scripts/setup installs it, with Debian's prometheus package)`);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
