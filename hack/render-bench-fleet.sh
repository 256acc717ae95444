#!/usr/bin/env bash
# Render docs/benchmark.md's "Fleet rollout in waves" table (the lines between its
# <!-- fleet-bench --> and <!-- /fleet-bench --> markers) from a recorded run of the fleet
# scenario: docs/bench/fleet.json unless another file is given.
#
#   hack/render-bench-fleet.sh [FILE]           print the block
#   hack/render-bench-fleet.sh --write [FILE]   replace the block in docs/benchmark.md
#
# Every figure in the block comes from the file, including where and on what it was
# measured (its "context"). hack/verify-bench-table.sh checks that docs/benchmark.md's block
# equals this rendering.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

write=false
if [ "${1:-}" = "--write" ]; then
  write=true
  shift
fi
file=${1:-docs/bench/fleet.json}
[ -s "$file" ] || die "no recorded fleet run at $file (hack/bench.sh --only fleet records one)"
need node "install Node.js 18 or newer"

render() {
  node - "$file" <<'JS'
const b = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const c = b.context, f = b.fleet;
if (!c || !c.machine || !c.finished_at || !c.commit || !c.profile) {
  console.error(`${process.argv[2]} has no context (date, commit, profile, machine): record a run with hack/bench.sh --only fleet`);
  process.exit(1);
}
if (!f || !f.with_waves || !f.without_waves) {
  console.error(`${process.argv[2]} has no fleet scenario (with_waves, without_waves)`);
  process.exit(1);
}
const w = f.with_waves, o = f.without_waves, n = f.hosts;
const rows = [];
const row = (what, ours, base, ratio) => rows.push(`| ${what} | ${ours} | ${base} | ${ratio || ''} |`);
const perHost = (m, pick) => m.hosts.map((h) => `${h.host} ${pick(h)}`).join(', ');
const waves = f.waves.map((v) => `${v.name}: ${v.hosts.join(', ')}${v.max_parallel > 1 ? `, ${v.max_parallel} at once` : ''}`).join('; then ');
row(`good commit on every host (config commit → all ${n} hosts live and Ready on it)`,
  `${w.good_all_live_s} s (soak ${f.soak_s} s; ${perHost(w, (h) => `${h.good_live_s} s`)})`,
  `${o.good_all_live_s} s (${perHost(o, (h) => `${h.good_live_s} s`)})`,
  `${Math.round(w.good_all_live_s / o.good_all_live_s * 10) / 10}× as long`);
const served = (m) => m.hosts.filter((h) => h.served_broken).map((h) => `${h.host}: ${h.broken_answers} answers, ${h.pm2_processes_from_broken_release} pm2 processes`).join('; ');
const notServed = (m) => m.hosts.filter((h) => !h.served_broken).map((h) => `${h.host} ${h.outcome}`).join(', ');
const hostsServed = (m) => `${m.broken_hosts_served} of ${n} (${[served(m), notServed(m)].filter(Boolean).join('; ')})`;
row('hosts that served the broken commit (any answer from it, polled every ' + f.poll_ms + ' ms on each host, or a pm2 process from its release)',
  hostsServed(w), hostsServed(o),
  w.broken_hosts_served === 1 ? 'only the canary ✓' : `${w.broken_hosts_served} hosts ✗ (goal: only the canary)`);
const answers = (m) => m.hosts.reduce((s, h) => s + h.broken_answers, 0);
row('answers from the broken commit, all hosts', `${answers(w)}`, `${answers(o)}`, '');
row('broken commit settled (reverted where taken, held by the gate elsewhere)', `${w.broken_settled_s} s`, `${o.broken_settled_s} s`, '');
const m = c.machine;
const tree = c.dirty === true ? ' with uncommitted changes' : '';
console.log(`Measured on ${m.cores} × ${m.cpu}, ${Math.round(m.memory_bytes / 2 ** 30)} GiB, ${c.finished_at.slice(0, 10)}, commit ${c.commit}${tree}, \`${c.profile}\` build profile; ${n} hosts (${waves}), ${f.app}, Prometheus scraping every ${f.scrape_interval_s} s:\n`);
console.log('| measure | with waves | without `spec.rollout` (baseline) | ratio |\n|---|---|---|---|');
console.log(rows.join('\n'));
JS
}

if ! $write; then
  render
  exit 0
fi

block=$(render)
tmp=$(mktemp)
BLOCK="$block" node - docs/benchmark.md "$tmp" <<'JS'
const fs = require('fs');
const [doc, out] = process.argv.slice(2);
const lines = fs.readFileSync(doc, 'utf8').split('\n');
const start = lines.findIndex((l) => l.startsWith('<!-- fleet-bench'));
const end = lines.findIndex((l, i) => i > start && l.startsWith('<!-- /fleet-bench'));
if (start < 0 || end < 0) { console.error('docs/benchmark.md has no <!-- fleet-bench --> … <!-- /fleet-bench --> markers'); process.exit(1); }
lines.splice(start + 1, end - start - 1, ...process.env.BLOCK.split('\n'));
fs.writeFileSync(out, lines.join('\n'));
JS
cat "$tmp" > docs/benchmark.md
rm -f "$tmp"
say "docs/benchmark.md's fleet table rendered from $file"
