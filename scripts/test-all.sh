#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Node.js 20, then builds,
# type-checks src/ and test/, and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v softhsm2-util >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null || need+=(opensc)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v promtool >/dev/null || need+=(prometheus)   # dsk export prometheus-rules is checked by promtool
command -v zsh >/dev/null || need+=(zsh)               # completion scripts are tried in real shells
command -v fish >/dev/null || need+=(fish)
command -v tmux >/dev/null || need+=(tmux)             # dsk top is read back from a tmux pane
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# PostgreSQL for the shared-store tests (never skipped under CI=true): use the one answering on
# 127.0.0.1:5432, else install and start Debian's cluster, with a password for the postgres role
# that the tests then take from PGPASSWORD.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  [ -d "/etc/postgresql/$ver/main" ] || $SUDO pg_createcluster "$ver" main >/dev/null
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  $SUDO -u postgres psql -q -c "ALTER ROLE postgres PASSWORD 'dsk-tests'" 2>/dev/null || su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD 'dsk-tests'\""
  export PGPASSWORD=dsk-tests
fi

# Redis for the shared rate-limit tests (never skipped under CI=true): the one answering on
# 127.0.0.1:6379, else Debian's redis-server started here.
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
if ! redis_up; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if ! command -v redis-server >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi

npm ci --no-audit --no-fund
npm run build
npm run typecheck
status=0
npx vitest run || status=$?
node -e '
  const r = require("./test-results.json");
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' || true
exit $status
