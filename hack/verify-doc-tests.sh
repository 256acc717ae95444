#!/usr/bin/env bash
# Every test that README.md, docs/reliability.md, docs/security.md and docs/failures.md name as proof
# (`file.rs::test_name`, a trailing `…` meaning a prefix) must exist: a renamed or deleted
# test fails this check instead of leaving the docs pointing at nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
checked=0
while IFS= read -r ref; do
  file=${ref%%::*}
  name=${ref#*::}
  prefix=0
  case "$name" in *…) name=${name%…}; prefix=1 ;; esac
  # A bare name (monitor.rs) or a path under src/ or tests/ (health/mod.rs).
  case "$file" in
    */*) files=$(find controller spec \( -path "$file" -o -path "*/$file" \) -not -path '*/target/*') ;;
    *) files=$(find controller spec -name "$file" -not -path '*/target/*') ;;
  esac
  if [ -z "$files" ]; then
    echo "missing file for $ref"; missing=$((missing + 1)); continue
  fi
  if [ $prefix -eq 1 ]; then pattern="fn ${name}"; else pattern="fn ${name}\\b"; fi
  # shellcheck disable=SC2086
  if ! grep -Eq "$pattern" $files; then
    echo "missing test: $ref"; missing=$((missing + 1))
  fi
  checked=$((checked + 1))
done < <(grep -ohE '[a-z0-9_/]+\.rs::[a-z0-9_]+…?' README.md docs/reliability.md docs/security.md docs/failures.md | sort -u)
if [ $missing -gt 0 ]; then
  echo "$missing test reference(s) in the docs name no test"; exit 1
fi
echo "the docs name $checked tests, all present"
