#!/usr/bin/env bash
# Regenerate schemas/app.schema.json from the types in spec/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p shipshape -- schema > schemas/app.schema.json.tmp
mv schemas/app.schema.json.tmp schemas/app.schema.json
echo "wrote schemas/app.schema.json"
