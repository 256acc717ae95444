#!/usr/bin/env bash
# Render README's benchmark table (from "Measured on" to the table's last row) from a
# recorded run: docs/bench/bench.json unless another file is given.
#
#   hack/render-bench.sh [FILE]           print the block
#   hack/render-bench.sh --write [FILE]   replace the block in README.md's "## Benchmark"
#
# Every figure in the block comes from the file, including where and on what it was
# measured (its "context": date, commit, build profile, machine). hack/verify-bench-table.sh
# checks that README.md's block equals this rendering.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

write=false
if [ "${1:-}" = "--write" ]; then
  write=true
  shift
fi
file=${1:-docs/bench/bench.json}
[ -s "$file" ] || die "no recorded run at $file (hack/bench.sh records one)"
need node "install Node.js 18 or newer"

render() {
  node - "$file" <<'JS'
const b = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const c = b.context;
if (!c || !c.machine || !c.finished_at || !c.commit || !c.profile) {
  console.error(`${process.argv[2]} has no context (date, commit, profile, machine): record a run with hack/bench.sh`);
  process.exit(1);
}
const rows = [];
const row = (what, ours, base, ratio) => rows.push(`| ${what} | ${ours} | ${base} | ${ratio} |`);
row('detection, local repo (inotify), median of 5', `${b.detection.local_median_s} s`, 'Flux 60 s / Argo CD 180 s poll', `${Math.round(60 / b.detection.local_median_s)}× / ${Math.round(180 / b.detection.local_median_s)}× sooner`);
row('detection, remote repo + webhook, median of 5', `${b.detection.webhook_median_s} s`, 'Flux 60 s / Argo CD 180 s poll', `${Math.round(60 / b.detection.webhook_median_s)}× / ${Math.round(180 / b.detection.webhook_median_s)}× sooner`);
for (const k of b.converge) row(`converge: ${k.kind} (${k.steps.join(', ')})`, `${k.shipshape_s} s`, `${k.checklist_s} s (checklist)`, `${k.speedup}×`);
row('revert, from the broken commit to the old version verified again', `${b.revert.shipshape_s} s`, `${b.revert.checklist_s} s (deploy + manual rollback)`, `${b.revert.speedup}×`);
const l = b.load_rollout;
row('failed requests during a code rollout at 250 req/s', `${l.shipshape.failed} of ${l.shipshape.requests}`, `${l.checklist.failed} of ${l.checklist.requests} (delete + start)`, '');
row('p99 latency during that rollout', `${l.shipshape.p99_ms} ms`, `${l.checklist.p99_ms} ms`, '');
row('failed requests during a revert at 250 req/s', `${b.load_revert.shipshape.failed} of ${b.load_revert.shipshape.requests}`, '', '');
row('controller idle CPU / resident memory', `${b.idle.cpu_percent} % / ${b.idle.rss_mb} MB`, '', '');
for (const n of b.noop) row(`no-op pass, ${n.apps} app(s)`, `${n.shared_jlist_s} s (shared jlist)`, `${n.jlist_per_app_s} s (jlist per app)`, `${n.gain}×`);
row(`no-op pass, config repo of ${b.history.commits} commits`, `${b.history.noop_pass_s_10k_commits} s`, `${b.history.noop_pass_s_1_commit} s (1 commit)`, '');
const m = c.machine;
const tree = c.dirty === true ? ' with uncommitted changes' : '';
console.log(`Measured on ${m.cores} × ${m.cpu}, ${Math.round(m.memory_bytes / 2 ** 30)} GiB, ${c.finished_at.slice(0, 10)}, commit ${c.commit}${tree}, \`${c.profile}\` build profile:\n`);
console.log('| measure | shipshape | baseline | ratio |\n|---|---|---|---|');
console.log(rows.join('\n'));
JS
}

if ! $write; then
  render
  exit 0
fi

block=$(render)
tmp=$(mktemp)
BLOCK="$block" node - README.md "$tmp" <<'JS'
const fs = require('fs');
const [readme, out] = process.argv.slice(2);
const lines = fs.readFileSync(readme, 'utf8').split('\n');
const section = lines.indexOf('## Benchmark');
if (section < 0) { console.error('README.md has no "## Benchmark" section'); process.exit(1); }
const start = lines.findIndex((l, i) => i > section && l.startsWith('Measured on '));
const next = lines.findIndex((l, i) => i > section && l.startsWith('## '));
if (start < 0 || (next >= 0 && start > next)) { console.error('no "Measured on" line in README.md\'s Benchmark section'); process.exit(1); }
let end = lines.findIndex((l, i) => i > start && l.startsWith('|'));
while (end + 1 < lines.length && lines[end + 1].startsWith('|')) end++;
lines.splice(start, end - start + 1, ...process.env.BLOCK.split('\n'));
fs.writeFileSync(out, lines.join('\n'));
JS
cat "$tmp" > README.md
rm -f "$tmp"
say "README.md's benchmark table rendered from $file"
