#!/usr/bin/env bash
# Render docs/benchmark.md's benchmark table (from "Measured on" to the table's last row) from a
# recorded run: docs/bench/bench.json unless another file is given; with --fleet, its "Fleet
# rollout in waves" table (the lines between its <!-- fleet-bench --> and <!-- /fleet-bench -->
# markers) from the fleet scenario's separate recorded run, docs/bench/fleet.json.
#
#   hack/render-bench.sh [--fleet] [FILE]           print the block
#   hack/render-bench.sh [--fleet] --write [FILE]   replace the block in docs/benchmark.md
#
# Every figure in the block comes from the file, including where and on what it was
# measured (its "context": date, commit, build profile, machine). hack/verify-bench-table.sh
# checks that docs/benchmark.md's blocks equal these renderings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

fleet=false
if [ "${1:-}" = "--fleet" ]; then
  fleet=true
  shift
fi
write=false
if [ "${1:-}" = "--write" ]; then
  write=true
  shift
fi
if $fleet; then
  file=${1:-docs/bench/fleet.json}
  [ -s "$file" ] || die "no recorded fleet run at $file (hack/bench.sh --only fleet records one)"
else
  file=${1:-docs/bench/bench.json}
  [ -s "$file" ] || die "no recorded run at $file (hack/bench.sh records one)"
fi
need node "install Node.js 18 or newer"

# Where and on what a run was measured, from its context ("Measured on …"); a file without
# one is refused.
measured_on_js() {
  cat <<'JS'
const measuredOn = (b, how) => {
  const c = b.context;
  if (!c || !c.machine || !c.finished_at || !c.commit || !c.profile) {
    console.error(`${process.argv[2]} has no context (date, commit, profile, machine): record a run with ${how}`);
    process.exit(1);
  }
  const m = c.machine;
  const tree = c.dirty === true ? ' with uncommitted changes' : '';
  return `Measured on ${m.cores} × ${m.cpu}, ${Math.round(m.memory_bytes / 2 ** 30)} GiB, ${c.finished_at.slice(0, 10)}, commit ${c.commit}${tree}, \`${c.profile}\` build profile`;
};
JS
}

render_bench() {
  {
    measured_on_js
    cat <<'JS'
const b = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const measured = measuredOn(b, 'hack/bench.sh');
const c = b.context;
const rows = [];
const row = (what, ours, base, ratio, target) => rows.push(`| ${what} | ${ours} | ${base} | ${ratio} | ${target || ''} |`);
const met = (ok, text) => `${text} ${ok ? '✓ met' : '✗ not met'}`;
const x = (n) => `${n}×`;
const stepOf = (steps, name) => (steps || []).find((s) => s.step === name);
const load = (l) => `${l.failed} of ${l.requests} failed, p99 ${l.p99_ms} ms, ${l.rate} req/s`;
// The issue's targets (issue 13); each row says whether this run met it.
const speedTarget = { 'env only': 20, 'code only': 1.5 };
row('detection, local repo (inotify), median of 5', `${b.detection.local_median_s} s`, 'Flux 60 s / Argo CD 180 s poll', `${Math.round(60 / b.detection.local_median_s)}× / ${Math.round(180 / b.detection.local_median_s)}× sooner`);
row('detection, remote repo + webhook, median of 5', `${b.detection.webhook_median_s} s`, 'Flux 60 s / Argo CD 180 s poll', `${Math.round(60 / b.detection.webhook_median_s)}× / ${Math.round(180 / b.detection.webhook_median_s)}× sooner`);
const f = b.first_deploy;
row('first deploy (nothing installed yet)', `${f.shipshape_s} s`, `${f.checklist_s} s (checklist)`, x(Math.round(f.checklist_s / f.shipshape_s * 10) / 10));
for (const k of b.converge) {
  const build = stepOf(k.checklist_steps, 'npm run build');
  const t = speedTarget[k.kind];
  row(`converge: ${k.kind} (${k.steps.map((s) => s.step).join(', ')})`, `${k.shipshape_s} s`,
    `${k.checklist_s} s (checklist${build ? `, its build ${build.s} s` : ''})`, x(k.speedup), t ? met(k.speedup >= t, `≥ ${t}×`) : '');
}
for (const k of b.converge) {
  row(`requests during ${k.kind}`, load(k.load.shipshape), `${load(k.load.checklist)} (delete + start)`, '',
    met(k.load.shipshape.failed === 0 && k.load.shipshape.rate >= 200, '0 failed at ≥ 200 req/s'));
}
const r = b.revert;
row(`revert: broken revision live → old revision verified again (${r.rule})`, `${r.shipshape_s} s`, `${r.checklist_s} s (manual rollback, rebuilds)`, x(r.speedup), met(r.speedup >= 20, '≥ 20×'));
row('revert: from the broken commit landing (builds and rolls it out first)', `${r.shipshape_from_broken_commit_s} s`, `${Math.round((r.checklist_broken_deploy_s + r.checklist_s) * 10) / 10} s (deploy + manual rollback)`, x(Math.round((r.checklist_broken_deploy_s + r.checklist_s) / r.shipshape_from_broken_commit_s * 10) / 10));
row('requests during the revert', load(r.load.shipshape), `${load(r.load.checklist)} (rollback)`, '', met(r.load.shipshape.failed === 0 && r.load.shipshape.rate >= 200, '0 failed at ≥ 200 req/s'));
// The stock Next.js app in pm2 fork mode (issue 20): traffic mode through nginx against
// in place (today's default), the same change, app and load.
const sn = b.stock_next;
if (sn) {
  const t = sn.traffic, p = sn.in_place;
  const conv = (k) => `${k.converge_s} s${k.converged ? '' : ` (${k.outcome}: ${(k.message || '').split(';')[0]})`}`;
  const zero = (l) => met(l.failed === 0 && l.rate >= 200, '0 failed at ≥ 200 req/s');
  for (const k of t.kinds) {
    const q = p.kinds.find((x) => x.kind === k.kind);
    row(`stock Next.js, fork, through nginx: converge, ${k.kind} (${k.steps.map((s) => s.step).join(', ')})`, conv(k), q ? `${conv(q)} (in place)` : '', '');
  }
  for (const k of t.kinds) {
    const q = p.kinds.find((x) => x.kind === k.kind);
    row(`stock Next.js, fork: requests during ${k.kind}`, load(k.load), q ? `${load(q.load)} (in place)` : '', '', zero(k.load));
  }
  const tb = t.broken, pb = p.broken;
  row('stock Next.js, fork: a release whose /api/health fails from its first request served users for', `${tb.served_s} s (${tb.served_answers} answers; ${tb.outcome})`, `${pb.served_s} s, ${pb.served_answers} answers (in place; ${pb.outcome})`, '', met(tb.served_answers === 0, '0 s'));
  row('stock Next.js, fork: requests during that broken release', load(tb.load), `${load(pb.load)} (in place, its revert)`, '', zero(tb.load));
  const r = t.regresses;
  if (r) {
    row('stock Next.js, fork: revert of a release that passes on its slot, then fails through nginx: verdict → old release serving alone', `${r.verdict_to_old_alone_s} s (a switch back)`, `${pb.verdict_to_old_alone_s} s (in place: the old release restarted)`, '', met(r.verdict_to_old_alone_s <= 1, '≤ 1 s'));
    row('stock Next.js, fork: requests during the revert', load(r.load), `${load(pb.load)} (in place)`, '', zero(r.load));
  }
}
const i = b.idle;
row(`idle CPU, controller and its children, 1 app, ${i.health_interval} health interval, a pass every ${i.pass_interval}, ${i.window_s} s`, `${i.cpu_percent} % of a core`, i.pm2_daemon_cpu_percent == null ? '' : `pm2 daemon ${i.pm2_daemon_cpu_percent} % (runs the app; not counted)`, '', met(i.cpu_percent <= 0.5, '≤ 0.5 %'));
row('idle resident memory, controller', `${i.rss_mb} MB`, `with children, peak: ${i.rss_peak_with_children_mb} MB`, '', met(i.rss_mb <= 15, '≤ 15 MB'));
const noopTarget = { 1: 0.02, 100: 0.3 };
for (const n of b.noop) {
  const t = noopTarget[n.apps];
  row(`no-op \`run --once\`, whole process, ${n.apps} app(s)`, `${n.shared_jlist_s} s (shared jlist)`, `${n.jlist_per_app_s} s (jlist per app)`, x(n.gain), t ? met(n.shared_jlist_s <= t, `≤ ${t * 1000} ms`) : '');
}
row(`no-op pass, config repo of ${b.history.commits} commits`, `${b.history.noop_pass_s_10k_commits} s`, `${b.history.noop_pass_s_1_commit} s (1 commit)`, '');
console.log(`${measured}:\n`);
console.log('| measure | shipshape | baseline | ratio | target |\n|---|---|---|---|---|');
console.log(rows.join('\n'));
JS
  } | node - "$file"
}

render_fleet() {
  {
    measured_on_js
    cat <<'JS'
const b = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const measured = measuredOn(b, 'hack/bench.sh --only fleet');
const f = b.fleet;
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
console.log(`${measured}; ${n} hosts (${waves}), ${f.app}, Prometheus scraping every ${f.scrape_interval_s} s:\n`);
console.log('| measure | with waves | without `spec.rollout` (baseline) | ratio |\n|---|---|---|---|');
console.log(rows.join('\n'));
JS
  } | node - "$file"
}

render() {
  if $fleet; then render_fleet; else render_bench; fi
}

if ! $write; then
  render
  exit 0
fi

block=$(render)
tmp=$(mktemp)
BLOCK="$block" FLEET="$fleet" node - docs/benchmark.md "$tmp" <<'JS'
const fs = require('fs');
const [doc, out] = process.argv.slice(2);
const lines = fs.readFileSync(doc, 'utf8').split('\n');
const fail = (why) => { console.error(why); process.exit(1); };
if (process.env.FLEET === 'true') {
  // Between the markers.
  const start = lines.findIndex((l) => l.startsWith('<!-- fleet-bench'));
  const end = lines.findIndex((l, i) => i > start && l.startsWith('<!-- /fleet-bench'));
  if (start < 0 || end < 0) fail('docs/benchmark.md has no <!-- fleet-bench --> … <!-- /fleet-bench --> markers');
  lines.splice(start + 1, end - start - 1, ...process.env.BLOCK.split('\n'));
} else {
  // From "Measured on" to the table's last row.
  const section = lines.indexOf('# Benchmark');
  if (section < 0) fail('docs/benchmark.md has no "# Benchmark" title');
  const start = lines.findIndex((l, i) => i > section && l.startsWith('Measured on '));
  const next = lines.findIndex((l, i) => i > section && l.startsWith('## ') && !l.startsWith('### '));
  if (start < 0 || (next >= 0 && start > next)) fail('no "Measured on" line in docs/benchmark.md');
  let end = lines.findIndex((l, i) => i > start && l.startsWith('|'));
  while (end + 1 < lines.length && lines[end + 1].startsWith('|')) end++;
  lines.splice(start, end - start + 1, ...process.env.BLOCK.split('\n'));
}
fs.writeFileSync(out, lines.join('\n'));
JS
cat "$tmp" > docs/benchmark.md
rm -f "$tmp"
if $fleet; then
  say "docs/benchmark.md's fleet table rendered from $file"
else
  say "docs/benchmark.md's benchmark table rendered from $file"
fi
