"""Train specgrove's embedded ``demo`` model pair: a small Llama target and a tiny Llama draft.

    python scripts/train_demo_pair.py --out specgrove/assets/demo --seed 0

1. Byte-level BPE tokenizer on the training split of the Python standard library source
   (see ``_demo_corpus.py``; the held-out modules are never trained on).
2. Target: next-token prediction on the training stream.
3. Draft: distillation, KL(target || draft) on the target's full output distributions over the
   training stream, so that draft/target agreement behaves like that of a real pair.
4. Evaluation on the held-out modules: loss of both models, and greedy acceptance (draft argmax
   == target argmax), teacher-forced on real text and along the target's greedy continuations.

Each phase runs a fixed number of steps (deterministic for a seed); ``--*-minutes`` caps its
wall time, and the LR schedule follows whichever of steps or minutes runs out first.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _demo_corpus as corpus  # noqa: E402

log = logging.getLogger("train_demo_pair")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("specgrove/assets/demo"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", type=Path, default=Path("runs/train_demo_pair.log"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--batch", type=int, default=8, help="sequences of --context tokens per step")
    p.add_argument("--target-steps", type=int, default=1000)
    p.add_argument("--target-minutes", type=float, default=30.0)
    p.add_argument("--target-lr", type=float, default=3e-3)
    p.add_argument("--draft-steps", type=int, default=900)
    p.add_argument("--draft-minutes", type=float, default=14.0)
    p.add_argument("--draft-lr", type=float, default=3e-3)
    p.add_argument("--eval-prompts", type=int, default=16)
    p.add_argument("--eval-new-tokens", type=int, default=128)
    return p.parse_args()


def llama(tok, context: int, hidden: int, layers: int, heads: int, ffn: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=ffn, max_position_embeddings=context,
        rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def batches(stream: np.ndarray, batch: int, context: int, rng: np.random.Generator):
    """Endless random windows of ``context`` tokens from the stream."""
    while True:
        starts = rng.integers(0, len(stream) - context, size=batch)
        yield torch.from_numpy(np.stack([stream[s : s + context] for s in starts]).astype(np.int64))


def train(name, model, loss_fn, data, steps, minutes, lr, warmup=30) -> dict:
    """AdamW with linear warmup and cosine decay to 10%, over min(steps, minutes)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    t0, step, ema = time.time(), 0, None
    bar = tqdm(total=steps, desc=name, mininterval=5)
    while True:
        progress = max(step / steps, (time.time() - t0) / (60 * minutes))
        if progress >= 1:
            break
        scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        loss = loss_fn(next(data))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}")
        if step % 50 == 0:
            log.info("%s step %d loss %.4f lr %.2e elapsed %.0fs", name, step, ema, lr * scale, time.time() - t0)
    bar.close()
    model.eval()
    seconds = time.time() - t0
    log.info("%s done: %d steps in %.0fs", name, step, seconds)
    return {"steps": step, "planned_steps": steps, "seconds": round(seconds, 1), "final_train_loss": round(ema, 4)}


@torch.no_grad()
def heldout_eval(target, draft, stream: np.ndarray, context: int) -> dict:
    """Loss of both models and teacher-forced greedy agreement, over every held-out position."""
    sums = {"target_nll": 0.0, "draft_nll": 0.0, "agree": 0}
    count = 0
    for s in range(0, len(stream) - 1, context):
        x = torch.from_numpy(stream[s : s + context + 1].astype(np.int64))[None]
        inp, labels = x[:, :-1], x[0, 1:]
        lt, ld = target(input_ids=inp).logits[0], draft(input_ids=inp).logits[0]
        sums["target_nll"] += F.cross_entropy(lt, labels, reduction="sum").item()
        sums["draft_nll"] += F.cross_entropy(ld, labels, reduction="sum").item()
        sums["agree"] += (lt.argmax(-1) == ld.argmax(-1)).sum().item()
        count += len(labels)
    return {"tokens": count, "target_loss": sums["target_nll"] / count,
            "draft_loss": sums["draft_nll"] / count, "greedy_acceptance_teacher_forced": sums["agree"] / count}


@torch.no_grad()
def continuation_eval(target, draft, tok, heldout: dict, prompts: int, new_tokens: int, rng) -> dict:
    """Greedy continuations of the target from held-out prompts; draft agreement along them."""
    prompt_len = 128
    encoded = tok.backend_tokenizer.encode_batch(list(heldout.values()), add_special_tokens=False)
    docs = [[tok.bos_token_id, *e.ids] for e in encoded]
    docs = [d for d in docs if len(d) > prompt_len + 1]
    xs = []
    for i in range(prompts):
        d = docs[i % len(docs)]
        s = int(rng.integers(0, len(d) - prompt_len))
        xs.append(d[s : s + prompt_len])
    inp = torch.tensor(xs)
    seqs = target.generate(input_ids=inp, attention_mask=torch.ones_like(inp), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    # Positions prompt_len-1 .. end-2 predict the generated tokens.
    lt = target(input_ids=seqs).logits[:, prompt_len - 1 : -1]
    ld = draft(input_ids=seqs).logits[:, prompt_len - 1 : -1]
    agree = (lt.argmax(-1) == ld.argmax(-1)).float()
    # Expected accepted tokens per step for greedy chain drafting of length k (plus the bonus token).
    chains = {}
    for k in (4, 8):
        run = []
        for row in agree:
            for s in range(0, len(row) - k + 1, k):
                window = row[s : s + k]
                run.append(int(window.cumprod(0).sum().item()) + 1)
        chains[f"tokens_per_step_chain{k}"] = float(np.mean(run))
    sample = tok.decode(seqs[0, prompt_len:], skip_special_tokens=False)
    return {"positions": agree.numel(), "greedy_acceptance_on_target_continuations": agree.mean().item(),
            **chains, "sample_prompt": tok.decode(seqs[0, :prompt_len]), "sample_continuation": sample}


def main() -> None:
    args = parse_args()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(args.log, mode="w"), logging.StreamHandler()])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()

    train_docs, heldout_docs = corpus.load_corpus()
    log.info("corpus: %s (Python %s): %d train files, %d held-out files",
             corpus.stdlib_dir(), corpus.python_version(), len(train_docs), len(heldout_docs))
    t0 = time.time()
    tok = corpus.train_tokenizer(list(train_docs.values()), args.vocab, args.context)
    train_stream = corpus.encode_stream(tok, list(train_docs.values()))
    heldout_stream = corpus.encode_stream(tok, list(heldout_docs.values()))
    tok_seconds = time.time() - t0
    log.info("tokenizer: vocab %d; %d train tokens, %d held-out tokens (%.0fs)",
             len(tok), len(train_stream), len(heldout_stream), tok_seconds)

    target = llama(tok, args.context, hidden=256, layers=4, heads=4, ffn=688)
    draft = llama(tok, args.context, hidden=128, layers=2, heads=4, ffn=344)
    log.info("target %d params, draft %d params", n_params(target), n_params(draft))

    def lm_loss(x):
        return target(input_ids=x, labels=x).loss

    def kd_loss(x):
        with torch.no_grad():
            teacher = F.log_softmax(target(input_ids=x).logits.float(), -1)
        student = F.log_softmax(draft(input_ids=x).logits.float(), -1)
        return F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1).mean()

    data = batches(train_stream, args.batch, args.context, rng)
    t_stats = train("target", target, lm_loss, data, args.target_steps, args.target_minutes, args.target_lr)
    target.requires_grad_(False)
    d_stats = train("draft", draft, kd_loss, data, args.draft_steps, args.draft_minutes, args.draft_lr)
    for stats in (t_stats, d_stats):
        stats["tokens_seen"] = stats["steps"] * args.batch * args.context

    ev = heldout_eval(target, draft, heldout_stream, args.context)
    ev.update(continuation_eval(target, draft, tok, heldout_docs, args.eval_prompts, args.eval_new_tokens,
                                np.random.default_rng(args.seed + 1)))
    log.info("eval: %s", json.dumps({k: v for k, v in ev.items() if not k.startswith("sample")}))
    log.info("sample continuation:\n%s", ev["sample_continuation"])

    for name, model in (("target", target), ("draft", draft)):
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(args.out / name, safe_serialization=True)
        corpus.save_tokenizer(tok, args.out / name)
    holdout = {"python_version": corpus.python_version(), "stdlib_relative_paths": corpus.HOLDOUT,
               "excluded_dirs": sorted(corpus.EXCLUDED_DIRS)}
    (args.out / "holdout.json").write_text(json.dumps(holdout, indent=2) + "\n")
    command = " ".join(["python", "scripts/train_demo_pair.py", *sys.argv[1:]])
    summary = {"command": command, "args": {k: str(v) for k, v in vars(args).items()}, "train_files": len(train_docs),
               "train_tokens": len(train_stream), "heldout_tokens": len(heldout_stream),
               "tokenizer_seconds": round(tok_seconds, 1), "target": {**t_stats, "params": n_params(target)},
               "draft": {**d_stats, "params": n_params(draft)}, "eval": ev,
               "total_seconds": round(time.time() - t_start, 1)}
    args.log.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "MODEL_CARD.md").write_text(model_card(summary, target, draft, tok))
    log.info("wrote %s in %.0fs total", args.out, time.time() - t_start)


def model_card(s: dict, target, draft, tok) -> str:
    ev, a = s["eval"], s["args"]

    def row(name, m):
        c, st = m.config, s[name]
        return (f"| {name} | {st['params']:,} | {c.num_hidden_layers} | {c.hidden_size} | {c.num_attention_heads} "
                f"| {c.intermediate_size} | {st['steps']} | {st['tokens_seen']:,} | {st['seconds'] / 60:.1f} min "
                f"| {ev[name + '_loss']:.3f} |")

    held = "\n".join(f"- `{p}`" for p in corpus.HOLDOUT)
    capped = [f"{n} ({s[n]['steps']} of {s[n]['planned_steps']} steps)" for n in ("target", "draft")
              if s[n]["steps"] < s[n]["planned_steps"]]
    cap_note = (f"In the run that produced these files the wall-time cap ended: {', '.join(capped)}, so a rerun "
                "gives a similar pair, not the same bytes." if capped else "In the run that produced these files "
                "no wall-time cap bound.")
    return f"""# specgrove `demo` model pair

A small Llama target and a tiny Llama draft trained from scratch on CPU, so that specgrove's
executor, tests and examples run offline with a pair whose acceptance behaves like a real one.
Toy models: they write Python-looking code, nothing more.

## Corpus

The Python {corpus.python_version()} standard library source: every `.py` file under
`sysconfig.get_paths()["stdlib"]` that decodes as UTF-8, excluding any directory named
{", ".join(f"`{d}`" for d in sorted(corpus.EXCLUDED_DIRS))}. Each file is one document,
`<bos> text <eos>`. {s['train_files']} training files, {s['train_tokens']:,} tokens;
held out (never trained on, listed in `holdout.json`), {s['heldout_tokens']:,} tokens:

{held}

## Tokenizer

Byte-level BPE (`tokenizers`), vocab {len(tok)}, trained on the training split only; specials
`<bos>`=0, `<eos>`=1, `<pad>`=2; encoding with special tokens prepends `<bos>`. The same
tokenizer is saved in `target/` and `draft/`.

## Models

Both `LlamaForCausalLM`, tied embeddings, context {target.config.max_position_embeddings}, float32.

| model | params | layers | hidden | heads | ffn | steps | tokens seen | train time | held-out loss (nats/token) |
|---|---|---|---|---|---|---|---|---|---|
{row("target", target)}
{row("draft", draft)}

- Target: next-token cross-entropy; AdamW (0.9, 0.95), weight decay 0.1, peak LR {a['target_lr']},
  30-step warmup, cosine decay to 10%; batch {a['batch']} x {a['context']} tokens.
- Draft: distilled from the finished target, KL(target || draft) on full output distributions
  over the same training stream; peak LR {a['draft_lr']}, same schedule and batch.
- Tokenizer training and encoding: {s['tokenizer_seconds']:.0f} s. Whole run: {s['total_seconds'] / 60:.1f} min
  on {a['threads']} CPU thread(s) of a shared machine.

## Greedy acceptance (draft argmax == target argmax), held-out modules

| measured on | positions | acceptance |
|---|---|---|
| real held-out text, teacher-forced | {ev['tokens']:,} | {ev['greedy_acceptance_teacher_forced']:.3f} |
| target's own greedy continuations ({a['eval_prompts']} held-out prompts of 128 tokens, {a['eval_new_tokens']} new tokens each) | {ev['positions']:,} | {ev['greedy_acceptance_on_target_continuations']:.3f} |

Along those continuations, greedy chain drafting would emit on average
{ev['tokens_per_step_chain4']:.2f} tokens per target step with 4 draft tokens and
{ev['tokens_per_step_chain8']:.2f} with 8 (accepted prefix plus the target's own token).

## Reproduce

```
{s['command']}
```

Deterministic for a seed and Python version as long as the `--target-minutes` /
`--draft-minutes` wall-time caps (defaults {a['target_minutes']} / {a['draft_minutes']}) do not bind;
the stdlib differs between Python versions, so other versions give other (similar) models.
{cap_note}
"""


if __name__ == "__main__":
    main()
