"""specgrove: dynamic-tree speculative decoding across GPUs, and a simulator to plan it.

The package root holds the value types every layer shares (numpy only): ``tree`` (token trees
and batch packing), ``registry`` (policies by kind and name), ``types`` (requests, step
records) and ``cost`` (the cost-model interface that the executor measures and the simulator
calibrates).
"""

__version__ = "0.1.0"
