#!/usr/bin/env bash
# A shipshape binary built without the `fault-injection` feature (what `cargo build
# --release`, hack/bench.sh and the quickstart build) has no SHIPSHAPE_FAULT code path: the
# variable's name, which only the fault-injection code reads, is absent from the binary.
# With --present, the opposite: a feature build must contain it (the check can see it).
#
# Usage: hack/verify-no-faults.sh [--present] BINARY
# Costs a grep of the binary (well under a second); it reuses a build the scripts make.
set -euo pipefail
want=absent
if [ "${1:-}" = "--present" ]; then
  want=present
  shift
fi
bin=${1:?usage: hack/verify-no-faults.sh [--present] BINARY}
[ -f "$bin" ] || { echo "error: no binary at $bin" >&2; exit 1; }
if grep -aq SHIPSHAPE_FAULT "$bin"; then found=present; else found=absent; fi
if [ "$found" != "$want" ]; then
  if [ "$want" = absent ]; then
    echo "error: $bin reads SHIPSHAPE_FAULT: fault injection is built in (a build without --features fault-injection must not carry it)" >&2
  else
    echo "error: $bin has no SHIPSHAPE_FAULT: it was not built with --features fault-injection, so the crash tests could not inject faults" >&2
  fi
  exit 1
fi
echo "$bin: SHIPSHAPE_FAULT $found, as expected"
