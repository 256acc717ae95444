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
# The same run also measures a fleet rollout in waves (spec.rollout): three controllers on
# this machine, one config repo, a real Prometheus (Debian's package) scraping them every
# second, the example app (examples/app): the time for a good commit to reach every host and
# how many hosts served a broken one, with waves against the same fleet without
# spec.rollout. It is written to target/bench/fleet.json, recorded as docs/bench/fleet.json
# and rendered into docs/benchmark.md's "Fleet rollout in waves" section
# (hack/render-bench.sh --fleet) on its own.
#
#   hack/bench.sh                     the whole benchmark, recorded (bench.json and fleet.json)
#   hack/bench.sh --only stock-next   only the stock Next.js scenario: printed, written to
#                                     target/bench/stock-next.json, never recorded
#   hack/bench.sh --only fleet        only the fleet scenario (1.5 minutes, after the build):
#                                     written to target/bench/fleet.json and recorded
#                                     (docs/bench/fleet.json, docs/benchmark.md's fleet table)
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
    case "${2:-}" in
      stock-next | fleet) only=$2 ;;
      *) die "--only takes one scenario: stock-next or fleet" ;;
    esac
    ;;
  *) die "usage: hack/bench.sh [--only stock-next|fleet]" ;;
esac

install_build_deps
install_pm2
if [ "$only" != fleet ]; then
  [ -n "${SHIPSHAPE_TEST_NGINX:-}" ] || install_nginx
  export SHIPSHAPE_TEST_NGINX=${SHIPSHAPE_TEST_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
fi
if [ "$only" != stock-next ]; then
  # The fleet scenario's Prometheus (Debian's package; never started as a service).
  command -v prometheus >/dev/null 2>&1 || apt_install prometheus
fi
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

# The fleet scenario's recorded run: copied to docs/bench/fleet.json, its table rendered
# into docs/benchmark.md and printed.
record_fleet() {
  [ -s target/bench/fleet.json ] || die "the fleet scenario passed but wrote no target/bench/fleet.json (see target/bench.log)"
  mkdir -p docs/bench
  cp target/bench/fleet.json docs/bench/fleet.json
  hack/render-bench.sh --fleet --write docs/bench/fleet.json
  echo
  hack/render-bench.sh --fleet docs/bench/fleet.json
  echo
}

if [ -n "$only" ]; then
  if [ "$only" = fleet ]; then
    say "running the fleet scenario alone (recorded)"
  else
    say "running the $only scenario alone (not recorded)"
  fi
  status=0
  SHIPSHAPE_BENCH_ONLY=$only TMPDIR="$ROOT/target/bench-tmp" cargo test --quiet -p shipshape --test bench -- --ignored --nocapture >target/bench.log 2>&1 || status=$?
  rm -rf target/bench-tmp
  grep -v '^BENCH-JSON' target/bench.log | grep "^$only" || true
  [ "$status" -eq 0 ] || die "the $only scenario failed (exit $status; see target/bench.log); nothing recorded"
  if [ "$only" = fleet ]; then
    record_fleet
    say "recorded as docs/bench/fleet.json and rendered into docs/benchmark.md's fleet table"
  else
    say "written to target/bench/$only.json"
  fi
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
[ -s target/bench/fleet.json ] || die "the benchmark passed but wrote no target/bench/fleet.json (see target/bench.log)"

mkdir -p docs/bench
cp target/bench/bench.json docs/bench/bench.json
hack/render-bench.sh --write docs/bench/bench.json
echo
hack/render-bench.sh docs/bench/bench.json
echo
record_fleet
say "recorded as docs/bench/bench.json and docs/bench/fleet.json and rendered into docs/benchmark.md; the prose under the table quotes figures by hand: re-read it"
