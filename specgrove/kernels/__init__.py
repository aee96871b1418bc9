"""Tree layout, ragged tree attention and KV compaction: CUDA kernels beside torch references.

Each module holds the torch reference (the CPU path), the CuPy launch of its ``.cu`` source, and
the checks both share; ``backend.choose`` is the one switch the executor asks. Depends on nothing
above it (torch, and CuPy on a GPU). See ``docs/kernels.md``.
"""
