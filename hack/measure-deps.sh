#!/usr/bin/env bash
# What giving a new release its own node_modules costs: hard links (what reuse-deps did
# before, unsafe: a write into one release reaches the other), the copy reuse-deps makes
# now (reflinks where the filesystem supports them, a byte copy otherwise), `cp -a
# --reflink=auto` for reference, and `npm ci` (what reuse-deps saves), on a node_modules
# of realistic size: `npm install next react react-dom` (~340 MB, ~10,000 files).
#
# Usage: hack/measure-deps.sh [DIR]   (DIR: where to measure, default a temp dir under
# $TMPDIR; put it on the filesystem of your releases root to measure that one).
# Needs node/npm and the npm registry; takes about a minute.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need npm "install Node.js (with npm)"

base=$(mktemp -d "${1:-${TMPDIR:-/tmp}}/measure-deps.XXXXXX")
trap 'rm -rf "$base"' EXIT
say "building the copy (cargo build --example copy-tree; a debug build: the time is system calls)"
cargo build -q -p shipshape --example copy-tree
copy="$ROOT/target/debug/examples/copy-tree"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

say "npm install next react react-dom (into $base/src)"
mkdir -p "$base/src"
(cd "$base/src" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error next react react-dom >/dev/null)
files=$(find "$base/src/node_modules" -type f | wc -l)
links=$(find "$base/src/node_modules" -type l | wc -l)
mb=$(du -sm "$base/src/node_modules" | cut -f1)
fs=$(df --output=fstype "$base" | tail -1)
sync

t0=$(now); cp -al "$base/src/node_modules" "$base/hardlinks"; t1=$(now)
hard=$(secs "$t0" "$t1")

mkdir -p "$base/copy"
t0=$(now); out=$("$copy" "$base/src/node_modules" "$base/copy/node_modules"); t1=$(now)
ours=$(secs "$t0" "$t1")
reflinked=$(sed -n 's/.*files (\([0-9]*\) reflinked).*/\1/p' <<<"$out")
sync

t0=$(now); cp -a --reflink=auto "$base/src/node_modules" "$base/cp"; t1=$(now)
cpa=$(secs "$t0" "$t1")
sync

rm -rf "$base/src/node_modules"
t0=$(now); (cd "$base/src" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); t1=$(now)
ci=$(secs "$t0" "$t1")

echo
echo "node_modules of next + react + react-dom: $files files, $links symlinks, $mb MB, on $fs ($base)"
echo "$(nproc) cores, $(date -u +%F); the copy reflinked $reflinked of $files files"
echo
echo "| giving a release its node_modules | seconds |"
echo "|---|---|"
echo "| hard links (cp -al; unsafe: shared inodes) | $hard |"
echo "| reuse-deps copy (shipshape::release::copy_tree) | $ours |"
echo "| cp -a --reflink=auto (reference) | $cpa |"
echo "| npm ci (npm cache warm) | $ci |"
