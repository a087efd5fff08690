# Sourced by scripts/demo and scripts/test: make or refresh .venv and install chat2crm into it,
# with the exact versions in requirements.lock (pip constraints), so a fresh machine gets the
# versions the suite passed with. Re-installs only when pyproject.toml or requirements.lock changed
# since the last install (a stamp holds their hash and the extra).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "chat2crm needs Python 3.11 or newer (tried: $py); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
extra="${CHAT2CRM_EXTRAS:-dev}"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  if ! "$py" -m venv "$venv"; then
    echo "could not create a virtual environment; on Debian or Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
fi
stamp="$venv/.chat2crm-installed"
hash="$(cat "$root/pyproject.toml" "$root/requirements.lock" | sha256sum | cut -c1-16)"
want="$hash-$extra"
have="$(cat "$stamp" 2>/dev/null || true)"
# the dev extra includes the demo extra, so a test install serves the demo as it is
if [ "$have" != "$want" ] && ! { [ "$extra" = demo ] && [ "$have" = "$hash-dev" ]; }; then
  echo "==> installing chat2crm[$extra] into .venv from requirements.lock (the first run takes a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install --quiet -c "$root/requirements.lock" -e "$root[$extra]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
