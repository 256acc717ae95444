#!/usr/bin/env bash
# The quickstart walk-through (hack/quickstart.sh --ci) N times in a row under a CPU hog:
# two busy loops keep both cores of a small machine loaded the whole time, as on a busy CI
# runner. Prints every run's result and time, then "K of N passed"; exits 1 unless all passed.
# Each run's output is kept in target/quickstart-soak/run-I.log (the walk-through removes its
# own directory, controller log included, when it ends).
#
#   hack/quickstart-soak.sh [N]     N defaults to 10
#   HOGS=4 hack/quickstart-soak.sh  more busy loops (default 2)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${1:-10}
HOGS=${HOGS:-2}
case "$N" in ''|*[!0-9]*) die "usage: hack/quickstart-soak.sh [N] (N a number of runs)" ;; esac
case "$HOGS" in ''|*[!0-9]*) die "HOGS must be a number" ;; esac

OUT="$ROOT/target/quickstart-soak"
rm -rf "$OUT"
mkdir -p "$OUT"

# Build once before the hogs start (each run's own `cargo build` is then a no-op).
say "building shipshape"
(cd "$ROOT" && cargo build --quiet -p shipshape)

HOG_PIDS=()
stop_hogs() {
  for p in "${HOG_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${HOG_PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  HOG_PIDS=()
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$HOGS"); do
  sh -c 'while :; do :; done' &
  HOG_PIDS+=("$!")
done
say "$HOGS CPU hogs running (pids ${HOG_PIDS[*]}); $N runs of hack/quickstart.sh --ci"

passed=0
results=()
for i in $(seq "$N"); do
  start=$(date +%s%3N)
  if SHIPSHAPE_QUICKSTART_DIR="$OUT/run-$i" "$ROOT/hack/quickstart.sh" --ci >"$OUT/run-$i.log" 2>&1; then
    result=passed
    passed=$((passed + 1))
  else
    result=FAILED
  fi
  ms=$(( $(date +%s%3N) - start ))
  line=$(printf 'run %2d: %s in %d.%01d s' "$i" "$result" $((ms / 1000)) $(((ms % 1000) / 100)))
  if [ "$result" = FAILED ]; then
    line="$line ($(grep -m1 -E '^error:' "$OUT/run-$i.log" || tail -1 "$OUT/run-$i.log"); log: $OUT/run-$i.log)"
  fi
  results+=("$line")
  echo "$line"
done
stop_hogs

say "results (under $HOGS CPU hogs)"
printf '%s\n' "${results[@]}"
echo "$passed of $N passed"
[ "$passed" -eq "$N" ]
