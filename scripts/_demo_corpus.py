"""Corpus, train/held-out split and tokenizer for the embedded ``demo`` model pair.

The corpus is the running interpreter's own standard library source: every ``.py`` file under
``sysconfig.get_paths()["stdlib"]`` that decodes as UTF-8, minus test suites (any ``test`` or
``tests`` directory), ``idlelib``, ``site-packages``, and two directories of generated data rather
than code: ``encodings`` (charmap tables) and ``pydoc_data`` (the help-topics text dump). It is on every machine that has Python,
so training needs nothing from a hub. The modules in ``HOLDOUT`` are never trained on.
"""

from __future__ import annotations

import json
import platform
import sysconfig
from pathlib import Path

import numpy as np

# Held-out modules (paths relative to the stdlib directory); used only for evaluation.
HOLDOUT = [
    "json/decoder.py",
    "textwrap.py",
    "heapq.py",
    "bisect.py",
    "shlex.py",
    "fractions.py",
    "statistics.py",
    "dataclasses.py",
    "csv.py",
    "gzip.py",
    "queue.py",
    "difflib.py",
    "string.py",
    "calendar.py",
    "colorsys.py",
]

EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "encodings", "pydoc_data"}
BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def python_version() -> str:
    return platform.python_version()


def load_corpus() -> tuple[dict[str, str], dict[str, str]]:
    """Return (train, heldout): dicts of relative path -> source text, in sorted path order."""
    root = stdlib_dir()
    train: dict[str, str] = {}
    heldout: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        key = rel.as_posix()
        (heldout if key in HOLDOUT else train)[key] = text
    missing = sorted(set(HOLDOUT) - set(heldout))
    if missing:
        raise SystemExit(f"held-out modules missing from {root}: {missing}")
    return train, heldout


def train_tokenizer(texts: list[str], vocab_size: int, context: int):
    """Byte-level BPE over ``texts``; returns a transformers ``PreTrainedTokenizerFast``.

    Encoding with special tokens prepends ``<bos>`` (as Llama tokenizers do); ``<eos>`` ends each
    document in training; ``<pad>`` is a dedicated token that never appears in training text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=context
    )


def save_tokenizer(tokenizer, directory: Path) -> None:
    """``save_pretrained``, naming the class so that transformers 4.x loads it as well as 5.x."""
    tokenizer.save_pretrained(directory)
    cfg_path = Path(directory) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def encode_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """Concatenate ``<bos> doc <eos>`` for every document into one int32 token stream."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        out.extend([bos, *enc.ids, eos])
    return np.asarray(out, dtype=np.int32)
