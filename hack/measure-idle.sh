#!/usr/bin/env bash
# What watching costs, and what a pass with nothing to do costs, measured on a release build:
#
#   1. idle: one app (examples/app, one fork-mode process, one HTTP check at the default
#      health interval of 2 s), the controller running (`shipshape run`, default --interval)
#      for IDLE_SECS (60) once the app is Healthy. CPU is the controller's utime + stime +
#      cutime + cstime delta from /proc/PID/stat (cutime/cstime: children it reaped, e.g. a
#      `pm2` CLI it started), in percent of one core; memory is the peak VmRSS sampled every
#      second from /proc/PID/status (split at the end into RssAnon, the process's own pages,
#      and RssFile, the binary's and libraries' pages mapped in). pm2's daemon is not the controller's child: its CPU is
#      printed beside, for information.
#   2. no-op: `shipshape run --once` with nothing to change, for 1 and 100 light apps
#      (`sleep` under pm2, no checks), whole-process wall time, the median of RUNS (5).
#
#   hack/measure-idle.sh                 build (cargo build --release) and measure
#   SHIPSHAPE_BIN=path hack/measure-idle.sh   measure that binary instead
#   IDLE_SECS=60 RUNS=5 NOOP_APPS="1 100"     the defaults
#
# Prints one `key value` line per figure at the end (idle_cpu_percent, idle_rss_mb,
# noop_1_s, noop_100_s, …). Needs pm2 in .tools (hack/test.sh or hack/quickstart.sh installs it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

IDLE_SECS=${IDLE_SECS:-60}
RUNS=${RUNS:-5}
NOOP_APPS=${NOOP_APPS:-"1 100"}
install_pm2
if [ -z "${SHIPSHAPE_BIN:-}" ]; then
  say "building shipshape (release)"
  cargo build --quiet --release -p shipshape --bin shipshape
  SHIPSHAPE_BIN="$ROOT/target/release/shipshape"
fi
BIN=$SHIPSHAPE_BIN
TICK=$(getconf CLK_TCK)

W=$(mktemp -d /tmp/shipshape-idle.XXXXXX)
CTL=""
cleanup() {
  [ -n "$CTL" ] && kill "$CTL" 2>/dev/null && wait "$CTL" 2>/dev/null
  for home in "$W"/pm2-*; do
    [ -d "$home" ] && env -i PATH="$PATH" PM2_HOME="$home" "$PM2_BIN" kill >/dev/null 2>&1
  done
  rm -rf "$W"
}
trap cleanup EXIT
G=(git -c user.name=measure -c user.email=measure@shipshape.invalid -c commit.gpgsign=false)

mkdir -p "$W/app"
cp "$ROOT"/examples/app/{server.js,build.js,package.json,package-lock.json,.gitignore} "$W/app/"
(cd "$W/app" && "${G[@]}" init -q -b main && "${G[@]}" add -A && "${G[@]}" commit -qm v1)
APP_COMMIT=$(git -C "$W/app" rev-parse HEAD)

# CPU ticks of PID and its reaped children: utime stime cutime cstime (fields 14-17).
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
status_json() { "$BIN" status "$1" -o json --state-dir "$2" 2>/dev/null; }

# --- 1. idle -------------------------------------------------------------------------
PORT=$(free_port)
mkdir -p "$W/idle-config/apps"
cat >"$W/idle-config/apps/idle.yaml" <<EOF
apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: idle
spec:
  source:
    repository: $W/app
    commit: $APP_COMMIT
  releases:
    root: $W/idle-srv
  build:
    install: npm ci --no-audit --no-fund
    steps: [npm run build]
  processes:
    - name: idle-web
      script: server.js
      env:
        PORT: "$PORT"
  health:
    checks:
      - name: api
        http:
          url: http://127.0.0.1:$PORT/api/health
EOF
(cd "$W/idle-config" && "${G[@]}" init -q -b main && "${G[@]}" add -A && "${G[@]}" commit -qm idle)

say "idle: starting the controller on one app (log: $W/idle.log)"
"$BIN" run --repo "$W/idle-config" --branch main --path apps --state-dir "$W/idle-state" \
  --pm2 "$PM2_BIN" --pm2-home "$W/pm2-idle" --listen 127.0.0.1:0 >"$W/idle.log" 2>&1 &
CTL=$!
ready() { status_json idle "$W/idle-state" | jq -e '.[0].phase == "Ready"' >/dev/null; }
wait_until 180 "the app to be Ready" ready
# Let the first pass's leftovers settle (a reaped child counts in cutime once, at its exit).
sleep 5
PM2_PID=$(cat "$W/pm2-idle/pm2.pid")
say "idle: measuring the controller (pid $CTL) for ${IDLE_SECS}s"
log0=$(wc -l <"$W/idle.log")
c0=$(ticks "$CTL"); p0=$(ticks "$PM2_PID"); t0=$EPOCHREALTIME
peak=0
end=$((SECONDS + IDLE_SECS))
while [ $SECONDS -lt $end ]; do
  r=$(rss_kb "$CTL"); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
c1=$(ticks "$CTL"); p1=$(ticks "$PM2_PID"); t1=$EPOCHREALTIME
threads=$(ls "/proc/$CTL/task" | wc -l)
# What the resident memory is: the process's own (anonymous) pages, and the pages of the
# binary and libraries mapped in (shared with the page cache).
anon=$(awk '/^RssAnon:/ { printf "%.1f", $2 / 1024 }' "/proc/$CTL/status")
file=$(awk '/^RssFile:/ { printf "%.1f", $2 / 1024 }' "/proc/$CTL/status")
idle_cpu=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$TICK" 'BEGIN { printf "%.2f", (b - a) / hz / (e - s) * 100 }')
pm2_cpu=$(awk -v a="$p0" -v b="$p1" -v s="$t0" -v e="$t1" -v hz="$TICK" 'BEGIN { printf "%.2f", (b - a) / hz / (e - s) * 100 }')
idle_rss=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')
tail -n +"$((log0 + 1))" "$W/idle.log" | grep -q "instead of its daemon socket" \
  && echo "note: the controller fell back to pm2's CLI during the measurement (see $W/idle.log)"
kill "$CTL"; wait "$CTL" 2>/dev/null || true; CTL=""
env -i PATH="$PATH" PM2_HOME="$W/pm2-idle" "$PM2_BIN" kill >/dev/null 2>&1 || true

# --- 2. no-op passes -----------------------------------------------------------------
mkdir -p "$W/noop-config/apps"
(cd "$W/noop-config" && "${G[@]}" init -q -b main)
light() { # NAME
  cat <<EOF
apiVersion: shipshape/v1alpha1
kind: App
metadata:
  name: $1
spec:
  source:
    repository: $W/app
    commit: $APP_COMMIT
  releases:
    root: $W/noop-srv/$1
  processes:
    - name: $1
      script: sleep
      interpreter: none
      args: "100000"
  health:
    checks: []
    interval: 200ms
    successThreshold: 1
EOF
}
once() {
  "$BIN" run --once --repo "$W/noop-config" --branch main --path apps --state-dir "$W/noop-state" \
    --pm2 "$PM2_BIN" --pm2-home "$W/pm2-noop" --concurrency 8 2>>"$W/noop.log"
}
declare -A NOOP
have=0
for n in $NOOP_APPS; do
  for ((i = have; i < n; i++)); do light "$(printf 'a%03d' "$i")" >"$W/noop-config/apps/$(printf 'a%03d' "$i").yaml"; done
  have=$n
  (cd "$W/noop-config" && "${G[@]}" add -A && "${G[@]}" commit -qm "$n apps" --allow-empty)
  say "no-op: converging $n app(s)"
  once || die "the first pass over $n app(s) failed (see $W/noop.log)"
  once || die "a second pass over $n app(s) was not a no-op success (see $W/noop.log)"
  times=()
  for ((r = 0; r < RUNS; r++)); do
    s=$EPOCHREALTIME
    once || die "a no-op pass failed (see $W/noop.log)"
    e=$EPOCHREALTIME
    times+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')")
  done
  NOOP[$n]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  echo "no-op pass, $n app(s): ${times[*]} s (median ${NOOP[$n]} s)"
done

echo
echo "idle_cpu_percent $idle_cpu"
echo "idle_rss_mb $idle_rss"
echo "idle_rss_anon_mb $anon"
echo "idle_rss_file_mb $file"
echo "idle_threads $threads"
echo "idle_pm2_daemon_cpu_percent $pm2_cpu"
for n in $NOOP_APPS; do echo "noop_${n}_s ${NOOP[$n]}"; done
