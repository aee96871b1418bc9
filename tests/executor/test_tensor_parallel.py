"""Tensor-parallel sharding, in one process: two shards run in two threads whose ``reduce``
meets at a barrier, so the math of the split (heads, KV heads, MLP, row-parallel biases) is
checked for every family without starting ranks. The multi-process engine is in
``test_parallel.py``."""

import threading

import pytest

pytest.importorskip("torch", reason="the executor tests need torch (the 'executor' extra)")

import torch
from tiny_models import VOCAB, tiny

from specgrove.executor.forward_batch import ForwardBatch
from specgrove.executor.parallel.tensor_parallel import ShardingError, shard
from specgrove.executor.runtime import from_hf


class ThreadReduce:
    """An all-reduce between ``world`` threads: each adds its tensor, all read the sum."""

    def __init__(self, world: int) -> None:
        self.world, self.parts = world, {}
        self.barrier = threading.Barrier(world)

    def for_rank(self, rank: int):
        def reduce(x):
            self.parts[rank] = x.clone()
            self.barrier.wait()
            total = sum(self.parts[r] for r in range(self.world))
            self.barrier.wait()
            x.copy_(total)
            return x
        return reduce


def _batch(model, prompts):
    batch = ForwardBatch([len(p) for p in prompts])
    for row, p in enumerate(prompts):
        batch.add(row, 0, p, range(len(p)), range(len(p)), [range(j) for j in range(len(p))])
    return batch.build(model.device)


def run_sharded(hf, world, prompts):
    reducer = ThreadReduce(world)
    models = [shard(from_hf(hf, len(prompts), 8), r, world, reducer.for_rank(r)) for r in range(world)]
    outs = [None] * world

    def work(r):
        outs[r] = models[r].forward(**_batch(models[r], prompts))

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return models, outs


@pytest.mark.parametrize("world", [2])
def test_shards_sum_to_the_whole_model(family, world):
    torch.manual_seed(0)
    hf = tiny(family)
    prompts = [torch.randint(1, VOCAB, (n,)).tolist() for n in (7, 4, 9)]
    whole = from_hf(hf, len(prompts), 8)
    want = whole.forward(**_batch(whole, prompts))
    models, outs = run_sharded(hf, world, prompts)
    for out in outs:
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    # Each rank holds its share of the KV heads (the cache is sharded by heads).
    assert models[0].cache.k.shape[2] * world == whole.cache.k.shape[2]
    assert models[0].num_heads * world == whole.num_heads


def test_a_shard_alone_is_not_the_model():
    """Without the all-reduce a rank's output is a partial sum: the reduce is what makes it
    whole (guards the test above against a shard that kept every weight)."""
    hf = tiny("llama")
    prompts = [[5, 9, 3]]
    whole = from_hf(hf, 1, 8)
    alone = shard(from_hf(hf, 1, 8), 0, 2, lambda x: x)
    assert not torch.allclose(alone.forward(**_batch(alone, prompts)), whole.forward(**_batch(whole, prompts)), atol=1e-3)


def test_heads_that_do_not_divide_are_refused():
    hf = tiny("llama")  # 4 heads, 2 KV heads
    with pytest.raises(ShardingError, match="KV heads .2. is not divisible by tp=4|attention heads"):
        shard(from_hf(hf, 1, 8), 0, 4, lambda x: x)
    with pytest.raises(ShardingError, match="not divisible by tp=3"):
        shard(from_hf(hf, 1, 8), 0, 3, lambda x: x)
