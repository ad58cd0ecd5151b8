#!/usr/bin/env bash
# Installs what Warren needs to build and test when it is missing: librabbitmq (headers and pkg-config file),
# RabbitMQ itself (for the throwaway test broker), Debian's amqp-tools (a foreign client the tests use), PostgreSQL (the
# ledger's tests) and headless Chromium with its WebDriver (the dashboard's browser tests).
set -euo pipefail

have_librabbitmq() { pkg-config --exists librabbitmq 2>/dev/null; }
have_rabbitmq() {
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ -n "${WARREN_RABBITMQ_BIN:-}" ] || command -v rabbitmq-server >/dev/null 2>&1
}
have_amqp_tools() { command -v amqp-publish >/dev/null 2>&1; }
have_openssl() { command -v openssl >/dev/null 2>&1; }  # the TLS tests make their certificates with it
have_promtool() { command -v promtool >/dev/null 2>&1; }  # checks docs/alerts.yaml (Debian's prometheus)
have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }  # the ledger's tests
have_chromium() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }  # the dashboard's browser tests

install_python_modules() {
  command -v python3 >/dev/null 2>&1 || return 0
  local module
  # prometheus_client parses /metrics in the tests; croniter is what the cron evaluator is compared with.
  for module in prometheus_client croniter; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
      echo "install-deps: installing Python's $module with pip" >&2
      python3 -m pip install --quiet --disable-pip-version-check "$module" >/dev/null 2>&1 \
        || python3 -m pip install --quiet --user --disable-pip-version-check "$module"
    fi
  done
}

if have_librabbitmq && have_rabbitmq && have_openssl && { { have_amqp_tools && have_promtool && have_postgres && have_chromium; } || [ "$(uname)" = Darwin ]; }; then
  install_python_modules
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "install-deps: need root (or sudo) to run apt-get install librabbitmq-dev rabbitmq-server amqp-tools" >&2
      exit 1
    fi
  fi
  echo "install-deps: installing librabbitmq-dev, rabbitmq-server, amqp-tools, prometheus (promtool), postgresql, chromium with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends pkg-config librabbitmq-dev rabbitmq-server amqp-tools openssl \
    prometheus postgresql chromium chromium-driver fonts-liberation >/dev/null
elif command -v brew >/dev/null 2>&1; then
  echo "install-deps: installing rabbitmq-c and rabbitmq with Homebrew" >&2
  brew install pkg-config rabbitmq-c rabbitmq prometheus postgresql
else
  cat >&2 <<'MSG'
install-deps: cannot install Warren's dependencies on this system automatically.
Install these yourself, then run make again:
  - librabbitmq (rabbitmq-c) 0.11 or newer, with its pkg-config file (librabbitmq.pc)
  - RabbitMQ server 3.10 or newer (rabbitmq-server and rabbitmqctl); set WARREN_RABBITMQ_BIN to their folder
    if they are not in /usr/lib/rabbitmq/bin or on PATH
MSG
  exit 1
fi

have_librabbitmq || { echo "install-deps: librabbitmq is still missing after the install" >&2; exit 1; }
have_rabbitmq || { echo "install-deps: rabbitmq-server is still missing after the install" >&2; exit 1; }
install_python_modules
