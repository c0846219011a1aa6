# Sourced by serve.sh and test.sh: make the virtual environment and install
# each requirements file whose contents changed since it was last installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${LLM_MANAGER_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  echo "Creating the virtual environment in $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

install_requirements() {
  local file stamp digest
  for file in "$@"; do
    stamp="$VENV/.installed-$(basename "$file")"
    digest="$(cat "$file" requirements.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
      echo "Installing $file"
      "$VENV/bin/python" -m pip install -q -r "$file"
      echo "$digest" > "$stamp"
    fi
  done
}
