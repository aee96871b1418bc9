"""The executor across processes and devices (torch.distributed: gloo on CPU, NCCL on CUDA).

* ``placement``: the deployment words shared with the simulator (``tp``, ``draft_placement``,
  ``num_replicas``), from flags or a scenario file's ``[deployment]`` section. Torch-free.
* ``launch``: a replica's process group, spawned here or joined under ``torchrun``.
* ``tensor_parallel``: shards a lean model's heads and MLP (a transform; model code only calls
  ``reduce``), and drives the shards of the other ranks from rank 0.
* ``remote_draft`` / ``pipeline``: the draft in a process of its own, overlapped with
  verification by two micro-batches in ping-pong.
"""
