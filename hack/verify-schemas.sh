#!/usr/bin/env bash
# Fail when schemas/app.schema.json differs from what the types generate.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cargo run --quiet -p shipshape -- schema > "$tmp"
if ! diff -u schemas/app.schema.json "$tmp"; then
  echo "schemas/app.schema.json is out of date: run hack/update-schemas.sh" >&2
  exit 1
fi
echo "schemas/app.schema.json is up to date"
