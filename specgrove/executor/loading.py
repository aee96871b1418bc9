"""Loading a target/draft pair from local directories.

Weights come from safetensors only; nothing is fetched from a hub. The two tokenizers must
share one vocabulary, checked before any generation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"


class PairLoadError(ValueError):
    """A model path or pair that cannot be used; the message names what is wrong."""


@dataclass
class ModelPair:
    name: str
    target: torch.nn.Module
    draft: torch.nn.Module
    tokenizer: object
    target_path: Path
    draft_path: Path


def demo_paths() -> tuple[Path, Path]:
    return DEMO_DIR / "target", DEMO_DIR / "draft"


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


# The model types the lean runtime runs (``runtime.base.from_hf``'s families; a test keeps the
# two lists equal). Checked from config.json before any weight is read.
SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2")


def _check_dir(path: Path, role: str) -> None:
    if not path.is_dir():
        raise PairLoadError(f"{role} model path {str(path)!r} is not a directory")
    if not (path / "config.json").is_file():
        raise PairLoadError(f"{role} model path {str(path)!r} has no config.json")
    if not any(path.glob("*.safetensors")):
        raise PairLoadError(f"{role} model path {str(path)!r} has no .safetensors weights")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_model_type(path: Path, role: str) -> str:
    """The model type in ``path``'s config.json, if the lean runtime runs it; else one line that
    names the model, its type and architecture, and what is supported."""
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PairLoadError(f"{role} model config {str(config_path)!r} is not readable JSON ({_first_line(exc)})") from None
    if not isinstance(config, dict):
        raise PairLoadError(f"{role} model config {str(config_path)!r} is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        archs = config.get("architectures") or []
        arch = f" ({', '.join(map(str, archs))})" if isinstance(archs, list) and archs else ""
        raise PairLoadError(f"{role} model at {str(path)!r} has model type {model_type!r}{arch}, which the lean "
                            f"runtime does not run; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return model_type


def _load_model(path: Path, role: str, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=dtype)
        return model.to(device).eval()
    except Exception as exc:  # noqa: BLE001 - user files: safetensors, transformers and torch each raise their own
        raise PairLoadError(f"{role} model at {str(path)!r} could not be loaded: {_first_line(exc)}") from None


def _load_tokenizer(path: Path, role: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - user files, as above
        raise PairLoadError(f"{role} tokenizer at {str(path)!r} could not be loaded: {_first_line(exc)}") from None


def load_pair(target_path: str | Path | None = None, draft_path: str | Path | None = None,
              device: str = "cpu", dtype: torch.dtype = torch.float32) -> ModelPair:
    """Load a pair (the embedded ``demo`` pair when no paths are given)."""
    _quiet_transformers()
    name = "demo" if target_path is None and draft_path is None else "custom"
    if name == "demo":
        target_path, draft_path = demo_paths()
        if not (target_path / "config.json").exists():
            raise PairLoadError(f"the demo pair is missing from {DEMO_DIR}; train it with scripts/train_demo_pair.py")
    elif target_path is None or draft_path is None:
        raise PairLoadError("give both --target and --draft, or neither for the demo pair")
    target_path, draft_path = Path(target_path), Path(draft_path)
    _check_dir(target_path, "target")
    _check_dir(draft_path, "draft")
    check_model_type(target_path, "target")
    check_model_type(draft_path, "draft")
    tok_t = _load_tokenizer(target_path, "target")
    tok_d = _load_tokenizer(draft_path, "draft")
    if tok_t.get_vocab() != tok_d.get_vocab():
        raise PairLoadError(
            f"target and draft tokenizers differ ({len(tok_t.get_vocab())} vs {len(tok_d.get_vocab())} "
            "tokens, or the same size with different ids); speculative decoding needs one vocabulary"
        )
    target = _load_model(target_path, "target", device, dtype)
    draft = _load_model(draft_path, "draft", device, dtype)
    if target.config.vocab_size != draft.config.vocab_size:
        raise PairLoadError(
            f"target and draft output sizes differ ({target.config.vocab_size} vs {draft.config.vocab_size})"
        )
    return ModelPair(name, target, draft, tok_t, target_path, draft_path)
