"""How tokens are chosen: greedy (temperature 0) or warped sampling, for target and draft alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def warp_probs(logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """Softmax at ``temperature``, then keep the smallest top set with mass >= ``top_p``.

    The same warp must be applied to the target and to the draft.
    """
    if temperature <= 0:
        raise ValueError("warp_probs needs temperature > 0 (use greedy verification for 0)")
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        # Keep a token if the mass strictly before it is < top_p (the top token always stays).
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The distribution a token is drawn from (greedy ranks by the plain softmax)."""
        if self.is_greedy:
            return torch.softmax(logits.double(), dim=-1)
        return warp_probs(logits, self.temperature, self.top_p)

    def pick(self, logits: torch.Tensor, generator: torch.Generator | None) -> int:
        """One token from a (V,) logits row: argmax, or a draw from the warped distribution."""
        if self.is_greedy:
            return int(logits.argmax())
        return int(torch.multinomial(self.probs(logits).float(), 1, generator=generator))
