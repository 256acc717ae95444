#!/usr/bin/env bash
# Check that docs/benchmark.md's benchmark table (from "Measured on" to the table's last row)
# is exactly hack/render-bench.sh's rendering of the recorded run,
# docs/bench/bench.json, and that its "Fleet rollout in waves" table (between the
# <!-- fleet-bench --> markers) is exactly hack/render-bench.sh --fleet's rendering of the
# fleet scenario's separate recorded run, docs/bench/fleet.json: no figure in either is typed
# by hand or left from an older run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

want=$(hack/render-bench.sh docs/bench/bench.json)
have=$(awk '
  /^# Benchmark$/ { section = 1; next }
  section && /^## / { exit }
  section && /^Measured on / { inblock = 1 }
  inblock && started_table && !/^\|/ { exit }
  inblock { print; if (/^\|/) started_table = 1 }
' docs/benchmark.md)
[ -n "$have" ] || die "docs/benchmark.md has no \"Measured on\" block"
if [ "$have" != "$want" ]; then
  diff <(printf '%s\n' "$have") <(printf '%s\n' "$want") >&2 || true
  die "docs/benchmark.md's benchmark table differs from docs/bench/bench.json's rendering (< docs/benchmark.md, > rendering); run hack/render-bench.sh --write"
fi
echo "docs/benchmark.md's benchmark table matches docs/bench/bench.json"

want=$(hack/render-bench.sh --fleet docs/bench/fleet.json)
have=$(awk '
  /^<!-- \/fleet-bench/ { exit }
  inblock { print }
  /^<!-- fleet-bench/ { inblock = 1 }
' docs/benchmark.md)
[ -n "$have" ] || die "docs/benchmark.md has no <!-- fleet-bench --> block"
if [ "$have" != "$want" ]; then
  diff <(printf '%s\n' "$have") <(printf '%s\n' "$want") >&2 || true
  die "docs/benchmark.md's fleet table differs from docs/bench/fleet.json's rendering (< docs/benchmark.md, > rendering); run hack/render-bench.sh --fleet --write"
fi
echo "docs/benchmark.md's fleet table matches docs/bench/fleet.json"
