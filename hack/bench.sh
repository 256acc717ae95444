#!/usr/bin/env bash
# The benchmark: shipshape against the seed checklist's procedure and the peers' defaults,
# every number measured in this run on this machine. Prints a table, writes
# target/bench/bench.json. Takes about 5 minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

install_build_deps
install_pm2
export SHIPSHAPE_TEST_PM2="$PM2_BIN" SHIPSHAPE_TEST_DBMATE="$DBMATE_BIN"
start_postgres
trap stop_postgres EXIT

say "running the benchmark (cargo test --test bench -- --ignored)"
cargo test --quiet -p shipshape --test bench -- --ignored --nocapture 2>&1 | tee target/bench.log | grep -v '^BENCH-JSON' | tail -5 || true
[ -s target/bench/bench.json ] || die "the benchmark did not finish (see target/bench.log)"

node - target/bench/bench.json <<'JS'
const b = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const os = require('os');
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
console.log(`\nMeasured on ${os.cpus().length} × ${os.cpus()[0].model.trim()}, ${Math.round(os.totalmem() / 2**30)} GiB, ${new Date().toISOString().slice(0, 10)}:\n`);
console.log('| measure | shipshape | baseline | ratio |\n|---|---|---|---|');
console.log(rows.join('\n'));
JS
