"""The lean-model interface and the choice of family by ``config.model_type``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specgrove.executor.runtime.gemm import Gemm
from specgrove.executor.runtime.kv import KVCache
from specgrove.kernels.backend import TORCH, Kernels, choose


class UnsupportedModelError(ValueError):
    """The model's architecture or options are outside what the lean runtime implements."""


class LeanModel:
    """Subclasses set ``num_layers, num_kv_heads, head_dim, vocab_size, max_positions`` and
    implement ``_layers(tokens, positions, slots, mask, num_keys, first_row) -> hidden`` and
    ``_head(hidden) -> logits`` (final norm and output projection)."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int
    dtype: torch.dtype
    device: torch.device
    kernels: Kernels = TORCH  # tree layout, tree attention and compaction: CuPy or torch
    gemm: Gemm  # the projections' matrix products (``runtime.gemm``); set by ``from_hf``
    graphs = None  # ``runtime.graphs.DecodeGraphs`` when dense forwards replay CUDA graphs

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum a row-parallel projection's partial outputs over tensor-parallel ranks; the
        identity until ``executor.parallel.tensor_parallel.shard`` replaces it."""
        return x

    def linear(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``F.linear``, through oneDNN's packed weight where ``gemm`` made one and it pays."""
        return self.gemm.linear(x, w, bias)

    def lay_out_weights(self) -> None:
        """On CPU, keep every projection weight column-major (its transpose contiguous), so that
        ``F.linear``'s ``x @ w.t()`` reads a contiguous (in, out) matrix: MKL's one-token GEMV
        is then about a third faster (the demo target's decode forward: 2.2 -> 1.55 ms). The
        output head gets its own copy when it is tied to the embedding, whose row lookups want
        row-major. Called again after tensor-parallel sharding, which slices row-major. Then
        ``gemm`` packs the large ones for oneDNN (``runtime.gemm``)."""
        if self.device.type != "cpu":
            return

        def column_major(w: torch.Tensor) -> torch.Tensor:
            return w.t().contiguous().t() if w.dim() == 2 and w.is_contiguous() else w

        for layer in self.layers:
            for name, w in layer.items():
                if isinstance(w, torch.Tensor):
                    layer[name] = column_major(w)
        self.lm_head = column_major(self.lm_head)
        self.gemm.pack([w for layer in self.layers for w in layer.values()] + [self.lm_head])

    def allocate(self, max_batch: int, max_len: int) -> None:
        self.cache = KVCache(self.num_layers, max_batch, self.num_kv_heads, max_len,
                             self.head_dim, self.dtype, self.device, self.kernels)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                mask: torch.Tensor, num_keys: int, first_row: int = 0,
                select: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for new tokens of cache rows first_row..first_row+B-1.

        tokens, positions, slots: (B, T) long; each token's K/V is written at ``slots`` before
        attention. mask: (B, T, num_keys) bool over cache slots 0..num_keys-1 (a query must see
        at least one slot, itself, or softmax has nothing to normalise). ``select`` = (batch
        index, column) tensors: return logits (N, V) for those tokens only, skipping the output
        projection for padding and for tokens whose logits nobody reads. Otherwise (B, T, V).
        """
        hidden = self._layers(tokens, positions, slots, mask[:, None], num_keys, first_row)
        if select is not None:
            hidden = hidden[select[0], select[1]]
        return self._head(hidden)

    def forward_batch(self, batch, select) -> torch.Tensor:
        """Logits (N, V) for ``select``'s (cache row, column) pairs of a ``ForwardBatch``:
        through a CUDA graph where one holds it (``runtime.graphs``), else eagerly."""
        if self.graphs is not None:
            logits = self.graphs.forward(batch, select)
            if logits is not None:
                return logits
        return self.forward(**batch.build(self.device, select=select))

    @torch.inference_mode()
    def forward_tree(self, tokens: torch.Tensor, parents: torch.Tensor, query_starts: torch.Tensor,
                     prefix_lens: torch.Tensor, rows: torch.Tensor, max_len: int, num_keys: int) -> torch.Tensor:
        """Logits (T, V) for a ragged batch of trees, no padding between requests.

        Request r's new tokens are ``tokens[query_starts[r]:query_starts[r+1]]``: its root (the
        last accepted token) then its tree nodes; ``parents`` gives each token's parent index
        within that slice (-1 for the root). Its cache row is ``rows[r]`` and it has
        ``prefix_lens[r]`` cached tokens. Positions, cache slots and the ancestor bitmask are
        built on the device by the kernels (``specgrove.kernels``): no host-built mask.
        ``max_len`` (the longest slice) and ``num_keys`` (the largest prefix + slice) are the
        host's to give, so that nothing waits on the device to learn them.
        """
        layout = self.kernels.tree_layout(parents, query_starts, prefix_lens, rows, max_len=max_len)
        plan = self.kernels.attention_plan(layout, num_keys)
        hidden = self._layers(tokens[None], layout.positions[None], layout, plan, num_keys, 0)
        return self._head(hidden[0])

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               slots: torch.Tensor, mask, num_keys: int, first_row: int) -> torch.Tensor:
        """Write k, v at their slots, then attend q over the row's cache; returns (B, T, H*D).

        ``mask`` is a dense boolean mask over the padded batch's rows; or, for ``forward_tree``
        (B = 1 holding every request's tokens back to back), ``slots`` is the batch's
        ``TreeLayout`` and ``mask`` the kernels' attention plan for it."""
        if not isinstance(mask, torch.Tensor):
            layout, T = slots, q.shape[2]
            self.cache.write_tokens(layer, k[0].transpose(0, 1), v[0].transpose(0, 1), layout.rows, layout.slots)
            out = self.kernels.tree_attention(q[0].transpose(0, 1).contiguous(), self.cache.k[layer],
                                              self.cache.v[layer], mask)
            return out.reshape(1, T, -1)
        self.cache.write(layer, k, v, slots, first_row)
        keys, values = self.cache.view(layer, first_row, q.shape[0], num_keys)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                             enable_gqa=q.shape[1] != keys.shape[1])
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def from_hf(model, max_batch: int, headroom: int = 258, kernels: str = "auto", gemm: str = "auto") -> LeanModel:
    """Wrap a loaded transformers causal LM in its lean family and allocate its cache: one
    row per batch slot, ``max_positions + headroom`` slots per row (the headroom holds a
    step's tree nodes and a padding slot beyond the longest sequence). ``kernels`` picks the
    CuPy kernels or the torch references (``specgrove.kernels.backend.choose``); ``gemm``,
    oneDNN's packed products where they pay (``auto``) or plain ``F.linear`` (``torch``)."""
    from specgrove.executor.runtime.gpt2 import GPT2Family
    from specgrove.executor.runtime.llama import LlamaFamily

    families = {"llama": LlamaFamily, "qwen2": LlamaFamily, "mistral": LlamaFamily, "gpt2": GPT2Family}
    model_type = model.config.model_type
    if model_type not in families:
        raise UnsupportedModelError(
            f"model type {model_type!r} is not supported; supported: {', '.join(sorted(families))}"
        )
    lean = families[model_type](model)
    lean.gemm = Gemm(gemm)
    lean.lay_out_weights()
    lean.kernels = choose(lean.device, kernels, lean.head_dim, lean.dtype)
    lean.allocate(max_batch, lean.max_positions + headroom)
    return lean
