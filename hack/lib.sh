#!/usr/bin/env bash
# Shared helpers for hack/*.sh. Source it; do not run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
PM2_BIN="$TOOLS/node_modules/.bin/pm2"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is needed: $2"
}

# Install Debian packages that are missing (as root, or through sudo).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The system libraries git2 (https, ssh) builds against.
install_build_deps() {
  need cargo "install Rust (https://rustup.rs)"
  need git "apt-get install git"
  if command -v dpkg >/dev/null 2>&1; then
    apt_install pkg-config libssl-dev
  fi
}

# pm2, pinned by hack/tools/package-lock.json, into the project-local .tools/.
install_pm2() {
  need node "install Node.js 18 or newer"
  need npm "install npm"
  local want
  want=$(sed -n 's/.*"pm2": "\(.*\)".*/\1/p' "$ROOT/hack/tools/package.json" | head -1)
  if [ -x "$PM2_BIN" ] && [ "$(node -p "require('$TOOLS/node_modules/pm2/package.json').version" 2>/dev/null)" = "$want" ] \
     && cmp -s "$ROOT/hack/tools/package-lock.json" "$TOOLS/package-lock.json"; then
    return 0
  fi
  say "installing pm2 $want into .tools/"
  mkdir -p "$TOOLS"
  cp "$ROOT/hack/tools/package.json" "$ROOT/hack/tools/package-lock.json" "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  [ -x "$PM2_BIN" ] || die "pm2 did not install into $TOOLS"
}

# nginx for the traffic tests: Debian's nginx-light where the release has it, else nginx.
# Installed WITHOUT starting or enabling the system service (each test starts its own on
# loopback with its own prefix): while apt runs, a policy-rc.d that refuses every service
# start (exit 101) is put in place when there is none, and removed afterwards (only the
# one this function wrote). When one was already there it is left alone, and if the
# install started or enabled the service anyway it is stopped and disabled (it was not
# installed before, so nothing else started it).
install_nginx() {
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    return 0
  fi
  command -v dpkg >/dev/null 2>&1 \
    || die "nginx is needed for the traffic tests: install it (never start its service), or set SHIPSHAPE_TEST_NGINX"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  local pkg=nginx
  if apt-cache show nginx-light 2>/dev/null | grep -q '^Package: nginx-light'; then
    pkg=nginx-light
  fi
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by shipshape hack/lib.sh install_nginx; removed after the install\nexit 101\n' \
      | $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    ours=1
  fi
  local rc=0
  apt_install "$pkg" || rc=$?
  if [ -n "$ours" ] && grep -q 'shipshape hack/lib.sh install_nginx' "$policy" 2>/dev/null; then
    $sudo rm -f "$policy"
  fi
  [ "$rc" -eq 0 ] || die "installing $pkg failed"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  elif [ -s /run/nginx.pid ] && [ -x /etc/init.d/nginx ]; then
    $sudo /etc/init.d/nginx stop >/dev/null 2>&1 || true
  fi
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || die "$pkg did not install nginx"
}

# A free TCP port on 127.0.0.1, below the kernel's ephemeral range (so a later bind(:0) by
# another process, such as the controller's API, cannot be handed the same port).
free_port() {
  node -e '
    const net = require("net");
    const tryPort = () => {
      const p = 20000 + Math.floor(Math.random() * 12000);
      const s = net.createServer();
      s.once("error", tryPort);
      s.listen(p, "127.0.0.1", () => { console.log(p); s.close(); });
    };
    tryPort();'
}

# Poll a command until it succeeds, or fail after $1 seconds.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

# Check that a command keeps succeeding for $1 seconds (polled); fail at its first failure.
hold_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  while [ $SECONDS -lt $deadline ]; do
    "$@" >/dev/null 2>&1 || die "$what stopped holding"
    sleep 0.5
  done
}

DBMATE_BIN="$TOOLS/node_modules/@dbmate/linux-x64/bin/dbmate"

# PostgreSQL from Debian's packages, started as the postgres user on a private port and
# socket directory. Sets PG_DIR and SHIPSHAPE_TEST_DATABASE_URL; stop it with stop_postgres.
start_postgres() {
  if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_DIR=$(mktemp -d /tmp/shipshape-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  mkdir -p "$PG_DIR/data" "$PG_DIR/run"
  local port
  port=$(free_port)
  local as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$PG_DIR"
    as_pg=(runuser -u postgres --)
  fi
  say "starting PostgreSQL ($bin) on 127.0.0.1:$port"
  "${as_pg[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log"; die "initdb failed"; }
  "${as_pg[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
    -o "-p $port -k $PG_DIR/run -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$PG_DIR/postgres.log"; die "PostgreSQL did not start"; }
  PG_BIN="$bin"
  export SHIPSHAPE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  [ -n "${PG_DIR:-}" ] || return 0
  local as_pg=()
  [ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
