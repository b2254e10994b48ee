#!/usr/bin/env bash
# Make sure what the test suite talks to is there: Debian's Chromium, PostgreSQL and Redis.
# Installs with apt-get when run as root and something is missing; starts stopped services.
set -euo pipefail

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# grep reads all of fc-list: with -q it would stop early and pipefail would count the SIGPIPE.
fc-list 2>/dev/null | grep -i dejavu >/dev/null || need_apt+=(fonts-dejavu-core)
# Call tests make a private network namespace (`ip` brings its loopback up).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Calls through TURN: coturn runs as the test's child (never as a system service) and nftables
# drops the visitor's UDP in its namespace.
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
# Cross-engine tests: Firefox (driven over WebDriver BiDi by puppeteer-core) and WebKitGTK
# (WebKitWebDriver, driven by selenium) under a virtual X server.
command -v firefox-esr >/dev/null 2>&1 || need_apt+=(firefox-esr)
command -v WebKitWebDriver >/dev/null 2>&1 || need_apt+=(webkit2gtk-driver)
command -v xvfb-run >/dev/null 2>&1 || need_apt+=(xvfb xauth)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The reference cluster's load balancer: HAProxy runs as the test's child (never as a service).
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_apt[*]} (run: sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
# The tests connect as postgres over TCP without a password (trust), to the database "test".
if ! psql -h 127.0.0.1 -U postgres -d test -tAc "select 1" >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
  if ! grep -q "sohbet-tests" "$hba"; then
    printf '# sohbet-tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | cat - "$hba" > "$hba.new"
    mv "$hba.new" "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
  fi
  su postgres -c "psql -tAc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
# The Firefox driver is an npm package pinned in tests/engines (it never downloads a browser).
engines_dir="$(dirname "$0")/../tests/engines"
if [ -f "$engines_dir/package-lock.json" ] && [ ! -d "$engines_dir/node_modules/puppeteer-core" ]; then
  echo "installing tests/engines node modules"
  (cd "$engines_dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi
echo "test services ready: chromium, firefox-esr, WebKitWebDriver, PostgreSQL, Redis, iproute2, coturn, nftables, haproxy"
