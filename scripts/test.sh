#!/usr/bin/env bash
# The whole guoku test suite, on a fresh machine.
#
# Installs or finds what the tests need, then runs every test of the workspace:
#   - a Rust toolchain (cargo): says how to get one when missing;
#   - PostgreSQL for the storage tests: GUOKU_TEST_PG_URL, else a server on
#     127.0.0.1:5432, else a throwaway cluster made with initdb/pg_ctl (installing
#     Debian's postgresql package as root when it is missing). With CI=true a missing
#     PostgreSQL fails the run; otherwise its tests are reported as skipped, loudly;
#   - Chromium for the browser tests: GUOKU_CHROMIUM, else one on PATH, else Debian's
#     chromium (installed as root), and a CJK font (fonts-wqy-microhei) when none is found.
#     With CI=true a missing Chromium fails the run; otherwise its tests say SKIPPED.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[test] %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust 1.95 or newer (https://rustup.rs: rustup toolchain install 1.95)"
  exit 2
fi

pg_reachable() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pg_cluster_dir=""
cleanup() {
  if [ -n "$pg_cluster_dir" ]; then
    runuser -u postgres -- pg_ctl -D "$pg_cluster_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_cluster_dir"
  fi
}
trap cleanup EXIT

start_throwaway_postgres() {
  local bindir
  if ! command -v initdb >/dev/null 2>&1; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bindir" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing PostgreSQL (Debian package postgresql)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [ -n "$bindir" ] || return 1
    PATH="$bindir:$PATH"
  fi
  pg_cluster_dir=$(mktemp -d /tmp/guoku-pg.XXXXXX)
  chmod 755 "$pg_cluster_dir"
  local port=55432
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_cluster_dir"
    runuser -u postgres -- env PATH="$PATH" initdb -A trust -U postgres -D "$pg_cluster_dir/data" >/dev/null
    runuser -u postgres -- env PATH="$PATH" pg_ctl -D "$pg_cluster_dir/data" -o "-p $port -k $pg_cluster_dir -c listen_addresses=127.0.0.1" -w start >/dev/null
  else
    initdb -A trust -U postgres -D "$pg_cluster_dir/data" >/dev/null
    pg_ctl -D "$pg_cluster_dir/data" -o "-p $port -k $pg_cluster_dir -c listen_addresses=127.0.0.1" -w start >/dev/null
  fi
  export GUOKU_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

if [ -n "${GUOKU_TEST_PG_URL:-}" ]; then
  say "PostgreSQL: $GUOKU_TEST_PG_URL (from GUOKU_TEST_PG_URL)"
elif pg_reachable 127.0.0.1 5432; then
  export GUOKU_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
  say "PostgreSQL: $GUOKU_TEST_PG_URL"
elif start_throwaway_postgres; then
  say "PostgreSQL: throwaway cluster at $GUOKU_TEST_PG_URL"
elif [ "${CI:-}" = "true" ]; then
  say "PostgreSQL: none found and none could be started; CI requires it"
  exit 2
else
  say "WARNING: no PostgreSQL; its tests will report themselves SKIPPED"
fi

# Chromium for the browser tests (crates/node/tests/browser.rs): GUOKU_CHROMIUM, else
# chromium / chromium-browser / google-chrome on PATH, else Debian's chromium installed as
# root. Receipts and pages show Chinese, so a CJK font is installed when none is found.
# With CI=true a missing browser fails the run; otherwise its tests report SKIPPED.
apt_install() { # packages...
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $* (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
find_chromium() {
  local name
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}
if [ -n "${GUOKU_CHROMIUM:-}" ]; then
  say "Chromium: $GUOKU_CHROMIUM (from GUOKU_CHROMIUM)"
elif GUOKU_CHROMIUM=$(find_chromium) || { apt_install chromium && GUOKU_CHROMIUM=$(find_chromium); }; then
  export GUOKU_CHROMIUM
  say "Chromium: $GUOKU_CHROMIUM"
elif [ "${CI:-}" = "true" ]; then
  say "Chromium: none found and none could be installed; CI requires it (set GUOKU_CHROMIUM)"
  exit 2
else
  unset GUOKU_CHROMIUM
  say "WARNING: no Chromium; the browser tests will report themselves SKIPPED"
fi
if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; then
  say "CJK font: $(fc-list :lang=zh family 2>/dev/null | head -n 1)"
elif apt_install fonts-wqy-microhei; then
  say "CJK font: WenQuanYi Micro Hei (installed)"
else
  say "WARNING: no CJK font (fc-list :lang=zh is empty): Chinese may render as boxes"
fi

cargo test --workspace --locked "$@"
