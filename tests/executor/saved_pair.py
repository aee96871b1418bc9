"""A tiny tokenizer + Llama pair saved to disk, as a user's local model directories would be."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int\n    y: int\n" * 20


def make_tokenizer(vocab_size: int, text: str = TEXT):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def save_model(path: Path, tokenizer, seed: int, layers: int, max_positions: int = 128):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         max_position_embeddings=max_positions, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def make_pair(root: Path) -> dict[str, Path]:
    tok = make_tokenizer(300)
    other = make_tokenizer(300, "the quick brown fox jumps over the lazy dog\n" * 20)
    return {
        "target": save_model(root / "target", tok, 0, 2),
        "draft": save_model(root / "draft", tok, 1, 1),
        "stranger": save_model(root / "stranger", other, 2, 1),
    }
