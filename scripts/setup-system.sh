#!/usr/bin/env bash
# System packages the full test suite needs: Debian's chromium (the browser tests drive it through
# Playwright; `playwright install` cannot download a browser here) and the PostgreSQL server (the
# storage tests start a throwaway cluster on 127.0.0.1). Installs what is missing when it can (root
# or password-less sudo); otherwise says what the tests will skip. Idempotent.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "setup-system: ${missing[*]} missing and no root: the browser / PostgreSQL tests will be skipped" >&2
  exit 0
fi
echo "setup-system: installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${missing[@]}" >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null; } \
  || { echo "setup-system: could not install ${missing[*]}" >&2; exit 1; }
