#!/usr/bin/env bash
# Install what the tests need and run every test: formatting, lints, the generated schema,
# unit and integration tests (real git, real pm2, the example Node app), and the quickstart.
#
# Installs (each only when missing): pkg-config and libssl-dev from Debian (for git2),
# PostgreSQL from Debian (started as the postgres user on a private port and socket dir,
# stopped at the end), Prometheus from Debian (each test starts its own; promtool),
# systemd from Debian (for systemd-analyze), nginx from Debian (nginx-light where the release
# has it; its service is never started or enabled: each traffic test starts its own nginx on
# loopback with its own prefix), pm2 and dbmate from npm into .tools/ (pinned by
# hack/tools/). cargo-deny is not installed: its checks run only where it already is.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

install_build_deps
install_pm2
# ssh-keygen verifies signed config commits in the tests.
command -v ssh-keygen >/dev/null 2>&1 || apt_install openssh-client
# gpg, for the gpg-signed commits test.
command -v gpg >/dev/null 2>&1 || apt_install gnupg
# Prometheus, for the prometheus check kind's tests (Debian's package; not started as a service).
command -v prometheus >/dev/null 2>&1 || apt_install prometheus
# systemd-analyze verifies the example unit (controller/tests/operator_kit.rs).
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
# hey, the load generator of the API flood test (controller/tests/flood.rs).
command -v hey >/dev/null 2>&1 || apt_install hey
# nginx, for the traffic tests (controller/tests/nginx_switch.rs and the slot tests).
install_nginx
# This is what CI runs, and the tools the checks need are installed above: with CI=true a
# test whose tool is missing fails instead of skipping its point.
export CI="${CI:-true}"
export SHIPSHAPE_TEST_PM2="$PM2_BIN"
export SHIPSHAPE_TEST_DBMATE="$DBMATE_BIN"
SHIPSHAPE_TEST_NGINX=$(command -v nginx || echo /usr/sbin/nginx)
export SHIPSHAPE_TEST_NGINX
start_postgres
trap stop_postgres EXIT

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (with the fault-injection feature the tests are built with)"
cargo clippy --workspace --all-targets --features shipshape/fault-injection --quiet -- -D warnings

if cargo deny --version >/dev/null 2>&1; then
  say "cargo deny (licenses, bans, sources)"
  cargo deny check licenses bans sources
else
  say "cargo deny is not installed: the license, ban and source checks of deny.toml do NOT run (cargo install cargo-deny)"
fi

say "schemas are up to date"
hack/verify-schemas.sh

say "README's benchmark table is the rendering of the recorded run"
hack/verify-bench-table.sh

say "every test the docs name as proof exists"
hack/verify-doc-tests.sh

say "cargo test (with the fault-injection feature: the crash tests kill the controller through SHIPSHAPE_FAULT)"
cargo test --workspace --features shipshape/fault-injection --no-fail-fast 2>&1 | tee target/test.log
# cargo exits non-zero on any failure (set -o pipefail carries it through tee).
hack/verify-no-faults.sh --present target/debug/shipshape

say "quickstart walk-through, 3 times in a row under two CPU hogs (hack/quickstart-soak.sh)"
# A busy machine is where the blame rule used to fail the walk-through (2 of 3 runs); the
# ten-run soak is recorded in docs/soak/ (hack/quickstart-soak.sh 10).
hack/quickstart-soak.sh "${SHIPSHAPE_SOAK_RUNS:-3}"

say "a build without the fault-injection feature has no SHIPSHAPE_FAULT code path"
# The quickstart's `cargo build -p shipshape` is the release build's feature set (none).
hack/verify-no-faults.sh target/debug/shipshape

passed=$(grep -Eo '[0-9]+ passed' target/test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test.log | awk '{s+=$1} END {print s+0}')
echo "$passed passed, $failed failed"
