#!/usr/bin/env node
// bench/peers-ratios.mjs -- ratios of one orchestrator against the peers measured in the SAME
// run of the peers harness (bench/peers.sh writes its output to ratios.md).
//
//   node bench/peers-ratios.mjs RESULTS_DIR [NAME=sagad]
//
// Reads RESULTS_DIR/raw.jsonl (one line per measured driver run: label, mode, concurrency,
// sagas_per_s, p50_ms, p99_ms, errors, load) and wrk.jsonl (the nginx ceiling), takes the median
// over the reps as the harness's summarize.mjs does, and prints markdown: NAME's sagas/s and
// latency, then NAME's sagas/s divided by each peer's (x times faster) and each peer's p50
// divided by NAME's (x times lower latency), per variant and number of clients.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
const me = process.argv[3] || 'sagad';
if (!dir) { console.error('usage: peers-ratios.mjs RESULTS_DIR [NAME]'); process.exit(2); }
const jsonl = (f) => {
  const p = path.join(dir, f);
  return fs.existsSync(p) ? fs.readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
};
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n ? (n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2) : NaN; };
const f = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

const runs = jsonl('raw.jsonl');
const by = new Map();   // label|mode|c -> runs
for (const r of runs) {
  const k = `${r.label}|${r.mode}|${r.concurrency}`;
  if (!by.has(k)) by.set(k, []);
  by.get(k).push(r);
}
const stat = (label, mode, c) => {
  const g = by.get(`${label}|${mode}|${c}`);
  if (!g) return null;
  const cpu = g.map((r) => {
    const own = r.load.proc_cpu_pct[label];
    return own !== undefined && r.sagas_per_s > 0 ? (10 * own) / r.sagas_per_s : NaN;
  });
  return {
    sps: med(g.map((r) => r.sagas_per_s)), p50: med(g.map((r) => r.p50_ms)), p99: med(g.map((r) => r.p99_ms)),
    errors: g.reduce((a, r) => a + r.errors, 0), reps: g.length, cpu: med(cpu),
    driver: med(g.map((r) => r.load.proc_cpu_pct.driver ?? NaN)),
  };
};
const peers = [...new Set(runs.map((r) => r.label))].filter((l) => l !== me && !l.includes('poll'));
const modes = [...new Set(runs.map((r) => r.mode))].sort((a, b) => (a === 'happy' ? -1 : b === 'happy' ? 1 : 0));
const concs = [...new Set(runs.map((r) => r.concurrency))].sort((a, b) => a - b);

const ceil = new Map();   // c -> median req/s of the nginx ceiling
for (const w of jsonl('wrk.jsonl')) {
  const c = Number((w.label.match(/c=(\d+)/) || [])[1]);
  const rps = Number((w.stdout.match(/Requests\/sec:\s+([\d.]+)/) || [])[1]);
  if (!ceil.has(c)) ceil.set(c, []);
  ceil.get(c).push(rps);
}

const out = [];
out.push(`### ${me} in this run (median of the reps)\n`);
out.push(`| variant | C | reps | ${me} sagas/s | p50 ms | p99 ms | errors | ${me} CPU ms/saga | driver CPU % |`);
out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const m of modes) for (const c of concs) {
  const s = stat(me, m, c);
  if (s) out.push(`| ${m} | ${c} | ${s.reps} | ${f(s.sps, 0)} | ${f(s.p50, 2)} | ${f(s.p99, 2)} | ${s.errors} | ${f(s.cpu, 3)} | ${f(s.driver, 0)} |`);
}
if (peers.length === 0) peers.push('(no peer in this run)');
out.push(`\n### Ratios: ${me} sagas/s ÷ peer sagas/s (peer p50 ÷ ${me} p50), same run\n`);
out.push(`| variant | C | ${peers.map((p) => `vs ${p}`).join(' | ')} | ${me} sagas/s ÷ nginx req/s (one call) |`);
out.push(`|---|---:|${peers.map(() => '---:').join('|')}|---:|`);
for (const m of modes) for (const c of concs) {
  const s = stat(me, m, c);
  if (!s) continue;
  const cells = peers.map((p) => {
    const q = stat(p, m, c);
    return q && q.sps > 0 ? `${f(s.sps / q.sps, 2)}× (${f(q.p50 / s.p50, 2)}×)` : 'n/a';
  });
  const ng = ceil.has(c) ? f(s.sps / med(ceil.get(c)), 3) : 'n/a';
  out.push(`| ${m} | ${c} | ${cells.join(' | ')} | ${ng} |`);
}
console.log(out.join('\n'));
