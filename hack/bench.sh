#!/usr/bin/env bash
# The benchmark: shipshape against the seed checklist's procedure and the peers' defaults,
# on a PromptHub-shaped Next.js app (examples/prompthub-next) with PostgreSQL under pm2
# cluster mode, every number measured in this run on this machine. Writes
# target/bench/bench.json (with the run's context: date, commit, build profile, machine),
# records it as docs/bench/bench.json, re-renders docs/benchmark.md's table from it
# (hack/render-bench.sh) and prints the table. A failed run fails the script and leaves no
# result behind: old results are deleted first.
#
# The same run also measures the stock Next.js app (examples/stock-next: next start, no
# custom server) in pm2 fork mode, in place and in traffic mode behind a real nginx
# (Debian's nginx-light, installed when missing by install_nginx; its own prefix, never the
# system service).
#
#   hack/bench.sh                     the whole benchmark, recorded
#   hack/bench.sh --only stock-next   only the stock Next.js scenario: printed, written to
#                                     target/bench/stock-next.json, never recorded
#
# Needs: the npm registry (Next.js, react, pg: from npm's cache after the first run), about
# 3 GB free under target/ (releases and the checklist's checkout, each with its own
# node_modules), and 15-25 minutes on 2 cores. The measured controller is a release build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

only=""
case "${1:-}" in
  "") ;;
  --only)
    [ "${2:-}" = "stock-next" ] || die "--only takes one scenario: stock-next"
    only=stock-next
    ;;
  *) die "usage: hack/bench.sh [--only stock-next]" ;;
esac

install_build_deps
install_pm2
[ -n "${SHIPSHAPE_TEST_NGINX:-}" ] || install_nginx
export SHIPSHAPE_TEST_NGINX=${SHIPSHAPE_TEST_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
export SHIPSHAPE_TEST_PM2="$PM2_BIN" SHIPSHAPE_TEST_DBMATE="$DBMATE_BIN"
if [ -z "$only" ]; then
  # The stock Next.js app has no database; the PromptHub-shaped one has.
  start_postgres
  trap stop_postgres EXIT
fi

# Nothing from an earlier run may be taken for this one.
rm -rf target/bench target/bench.log target/bench-tmp
mkdir -p target/bench-tmp

say "building the controller with the release profile (the binary the bench measures)"
cargo build --quiet --release -p shipshape --bin shipshape
hack/verify-no-faults.sh target/release/shipshape
export SHIPSHAPE_TEST_BIN="$ROOT/target/release/shipshape"
export NEXT_TELEMETRY_DISABLED=1

if [ -n "$only" ]; then
  say "running the $only scenario alone (not recorded)"
  status=0
  SHIPSHAPE_BENCH_ONLY=$only TMPDIR="$ROOT/target/bench-tmp" cargo test --quiet -p shipshape --test bench -- --ignored --nocapture >target/bench.log 2>&1 || status=$?
  rm -rf target/bench-tmp
  grep -v '^BENCH-JSON' target/bench.log | grep '^stock-next' || true
  [ "$status" -eq 0 ] || die "the $only scenario failed (exit $status; see target/bench.log)"
  say "written to target/bench/$only.json"
  exit 0
fi

say "running the benchmark (cargo test --test bench -- --ignored)"
status=0
# The bench's worlds (app releases, the checklist's live checkout, their node_modules)
# live under target/, git-ignored, and go away with the run.
TMPDIR="$ROOT/target/bench-tmp" cargo test --quiet -p shipshape --test bench -- --ignored --nocapture >target/bench.log 2>&1 || status=$?
rm -rf target/bench-tmp
grep -v '^BENCH-JSON' target/bench.log | tail -5
[ "$status" -eq 0 ] || die "the benchmark failed (exit $status; see target/bench.log); nothing recorded"
[ -s target/bench/bench.json ] || die "the benchmark passed but wrote no target/bench/bench.json (see target/bench.log)"

mkdir -p docs/bench
cp target/bench/bench.json docs/bench/bench.json
hack/render-bench.sh --write docs/bench/bench.json
echo
hack/render-bench.sh docs/bench/bench.json
echo
say "recorded as docs/bench/bench.json and rendered into docs/benchmark.md; the prose under the table quotes figures by hand: re-read it"
