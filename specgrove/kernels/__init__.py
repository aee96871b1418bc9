"""Tree-attention mask and KV-compaction kernels: CuPy versions beside their torch references.

Each module will hold the torch reference (the CPU path), the GPU kernel, and a wrapper that
checks shapes, dtypes and devices; the executor picks one by device. Depends on nothing above.
"""
