#!/usr/bin/env bash
# Create the peer virtual environment holding OLMo's own data loader (PyPI `ai2-olmo`), used by
# the reader-parity test (`pytest -m peer tests/test_tokenize_parity.py`): OLMo's MemMapDataset
# must return the same instances from our token arrays as our training/data.py does.
#
# Idempotent: a complete venv (marked by .dolma-prep-ready) is left as it is; a half-built one
# is removed and rebuilt. ai2-olmo is installed with --no-deps (it declares numpy<2 and pulls
# ai2-olmo-core, transformers, wandb-era pins we do not need), then exactly what
# `import olmo.data` needs. torch is pinned to the project's CPU build (a bare `torch`
# requirement would pull a multi-GB CUDA build). A few minutes on a fresh machine.
#
#   scripts/setup_peer_olmo.sh            # -> .peer-venvs/olmo
#   PEER_OLMO_VENV=/some/path scripts/setup_peer_olmo.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEER_OLMO_VENV:-$ROOT/.peer-venvs/olmo}"
MARK="$VENV/.dolma-prep-ready"
OLMO_VERSION="0.6.0"
TORCH_VERSION="2.13.0"
CHECK='from olmo.data.memmap_dataset import MemMapDataset; from olmo.data.iterable_dataset import IterableDataset'

if [[ -f "$MARK" ]] && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  echo "peer venv ready: $VENV ($(cat "$MARK"))"
  exit 0
fi

PY="${PEER_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,12) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "setup_peer_olmo: no python 3.10-3.12 found (set PEER_PYTHON)" >&2
  exit 1
fi

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==$TORCH_VERSION"
"${PIP[@]}" --no-deps "ai2-olmo==$OLMO_VERSION"
# What `import olmo` and `olmo.data` import at module level (olmo/util.py, config.py, tokenizer.py).
"${PIP[@]}" numpy omegaconf rich "cached-path>=1.6.2" importlib_resources packaging requests \
  boto3 google-cloud-storage google-api-core datasets tokenizers
"$VENV/bin/python" -c "$CHECK"
echo "ai2-olmo==$OLMO_VERSION torch==$TORCH_VERSION python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" > "$MARK"
echo "peer venv ready: $VENV ($(cat "$MARK"))"
