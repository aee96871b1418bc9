"""Lossless verification of token trees against the target's distributions (torch).

Inputs are the target's logits or probabilities at the root and at every node of one tree,
row 0 for the root and row i + 1 for node i (the order ``specgrove.packing`` lays out), so the
functions run wherever the target's output lives. Sampling inputs are already warped
(temperature, top-p) by ``sampling.SamplingParams``, identically for target and draft.

Greedy: follow the children whose token equals the target's argmax; then emit the target's
argmax at the last accepted node (the bonus token). That is exactly target-only greedy.

Sampling: recursive rejection sampling over siblings (Jeon et al., 2024; SpecInfer's
multi-step speculative sampling is the with-replacement variant). At a node with target
distribution p, try the children in order. A child proposing x, drawn from q, is accepted with
probability min(1, p(x)/q(x)); on rejection p becomes the residual norm(max(p - q, 0)) and q
loses x (the siblings were drawn without replacement). If every child is rejected, the token
is drawn from the last residual. Children chosen deterministically (top-k trees) are the case
q = one-hot(x): accept with p(x), residual = p without x. Either way the emitted token is
distributed exactly as p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specgrove.tree import Tree, children


@dataclass(frozen=True)
class Verdict:
    """Outcome for one request: the accepted nodes (root to deepest) and the emitted tokens,
    which are the accepted nodes' tokens followed by one token from the target."""

    accepted_nodes: list[int]
    tokens: list[int]

    @property
    def num_accepted(self) -> int:
        return len(self.accepted_nodes)


def verify_greedy(tree: Tree, target_argmax: list[int] | torch.Tensor) -> Verdict:
    """``target_argmax[r]``: the target's argmax after row r (root row 0, node i row i + 1)."""
    if isinstance(target_argmax, torch.Tensor):
        target_argmax = target_argmax.tolist()
    kids = children(tree.parents)
    tokens = tree.tokens.tolist()
    node, accepted = -1, []
    while True:
        want = target_argmax[node + 1]
        nxt = next((c for c in kids[node] if tokens[c] == want), None)
        if nxt is None:
            return Verdict(accepted, [tokens[c] for c in accepted] + [want])
        accepted.append(nxt)
        node = nxt


def _residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(p - q, 0)): what p still owes after q's proposal was rejected."""
    r = torch.clamp(p - q, min=0.0)
    total = r.sum()
    # total == 0 means p <= q everywhere, i.e. p == q, where rejection has probability 0;
    # only rounding can bring us here, and p itself is then the right distribution.
    return r / total if total > 0 else p


def verify_sampling(
    tree: Tree,
    target_probs: torch.Tensor,
    generator: torch.Generator,
    draft_probs: torch.Tensor | None = None,
) -> Verdict:
    """Lossless sampling verification of one tree.

    ``target_probs``: (n + 1, V) warped target distributions, root row first.
    ``draft_probs``: the (n + 1, V) distributions each node's children were drawn from
    without replacement, or None when children were chosen deterministically (top-k).
    """
    kids = children(tree.parents)
    tokens = tree.tokens.tolist()
    device = target_probs.device
    node, accepted = -1, []
    while True:
        p = target_probs[node + 1].double()
        q_row = None if draft_probs is None else draft_probs[node + 1].double().clone()
        for child in kids[node]:
            x = tokens[child]
            if q_row is None:
                q = torch.zeros_like(p)
                q[x] = 1.0
            else:
                q = q_row / q_row.sum()
            # Accept x with probability min(1, p(x) / q(x)); q(x) > 0 since x was drawn from q.
            ratio = (p[x] / q[x]).clamp(max=1.0) if q[x] > 0 else p.new_tensor(0.0)
            if torch.rand((), generator=generator, device=device, dtype=torch.float64) < ratio:
                accepted.append(child)
                break
            p = _residual(p, q)
            if q_row is not None:
                q_row[x] = 0.0  # sampled without replacement: the next sibling is not x
        else:
            token = int(torch.multinomial(p.float(), 1, generator=generator).item())
            return Verdict(accepted, [tokens[c] for c in accepted] + [token])
        node = accepted[-1]
