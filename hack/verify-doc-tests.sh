#!/usr/bin/env bash
# Every test that README.md and the pages under docs/ name as proof
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
done < <(grep -ohE '[a-z0-9_/]+\.rs::[a-z0-9_]+…?' README.md docs/*.md | sort -u)
if [ $missing -gt 0 ]; then
  echo "$missing test reference(s) in the docs name no test"; exit 1
fi
echo "the docs name $checked tests, all present"

# Every relative link in README.md and docs/*.md names a file that exists, and an anchor
# (#section) names a heading of that file (GitHub's slugs): a page moved or a section renamed
# fails here instead of leaving a newcomer at a dead link.
node - README.md docs/*.md <<'JS'
const fs = require('fs'), path = require('path');
const slug = (h) => h.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
const anchors = (file) => {
  let inFence = false; const out = new Set();
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    if (l.startsWith('```')) inFence = !inFence;
    if (!inFence && /^#{1,6} /.test(l)) out.add(slug(l.replace(/^#+ /, '')));
  }
  return out;
};
let bad = 0, seen = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1];
    if (/^[a-z]+:/.test(target)) continue;
    seen++;
    const [p, anchor] = target.split('#');
    const dest = p ? path.join(path.dirname(file), p) : file;
    if (!fs.existsSync(dest)) { console.log(`${file}: link to ${target}: no such file`); bad++; continue; }
    if (anchor && dest.endsWith('.md') && !anchors(dest).has(anchor)) {
      console.log(`${file}: link to ${target}: no heading #${anchor} in ${dest}`); bad++;
    }
  }
}
if (bad) { console.log(`${bad} broken link(s) in the docs`); process.exit(1); }
console.log(`the docs' ${seen} relative links all resolve`);
JS
