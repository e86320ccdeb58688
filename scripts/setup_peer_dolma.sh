#!/usr/bin/env bash
# Create the peer virtual environment holding the real dolma toolkit (v1.2.1), used by the
# parity tests (`pytest -m peer tests/test_taggers_parity.py`) and benchmarks/taggers.py.
#
# Idempotent: a complete venv (marked by .dolma-prep-ready) is left as it is; a half-built
# one is removed and rebuilt. dolma 1.2.1 pins old tokenizers/s3fs/botocore and numpy<2, so
# it lives apart from the project's own .venv. Takes several minutes on a fresh machine.
#
#   scripts/setup_peer_dolma.sh            # -> .peer-venvs/dolma
#   PEER_DOLMA_VENV=/some/path scripts/setup_peer_dolma.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEER_DOLMA_VENV:-$ROOT/.peer-venvs/dolma}"
MARK="$VENV/.dolma-prep-ready"
DOLMA_VERSION="1.2.1"

if [[ -f "$MARK" ]] && "$VENV/bin/python" -c "import dolma, pycld2" >/dev/null 2>&1; then
  echo "peer venv ready: $VENV ($(cat "$MARK"))"
  exit 0
fi

# dolma 1.2.1 ships wheels for CPython 3.10-3.12; prefer 3.11 like the project's venv.
PY="${PEER_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.10 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,12) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "setup_peer_dolma: no python 3.10-3.12 found (set PEER_PYTHON)" >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# pycld2 for cld2_en_doc_v2; regex for the pii taggers; the `code` extra for code_starcoder_taggers_v2.
"$VENV/bin/python" -m pip install --quiet "dolma[code]==$DOLMA_VERSION" pycld2 regex
"$VENV/bin/python" -c "import dolma, pycld2; from dolma.core.registry import TaggerRegistry" >/dev/null
"$VENV/bin/dolma" --help >/dev/null
echo "dolma==$DOLMA_VERSION python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" > "$MARK"
echo "peer venv ready: $VENV ($(cat "$MARK"))"
