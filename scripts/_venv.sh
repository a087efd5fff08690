# Sourced by scripts/demo and scripts/test: make or refresh .venv and install chat2crm into it.
# Re-installs only when pyproject.toml changed since the last install (a stamp holds its hash).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "chat2crm needs Python 3.11 or newer (tried: $py); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.chat2crm-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16)-${CHAT2CRM_EXTRAS:-dev}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> installing chat2crm and its dependencies into .venv (first run takes a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install --quiet -e "$root[${CHAT2CRM_EXTRAS:-dev}]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
