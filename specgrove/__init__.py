"""specgrove: dynamic-tree speculative decoding across GPUs, and a simulator to plan it.

The package root holds what every layer shares (numpy only): ``tree`` (token trees),
``packing`` (several trees as one verification input), ``registry`` (policies by kind and
name), ``types`` (the request schedulers see), ``trace`` (the step-trace format both worlds
write) and ``cost`` (the cost-model interface: measured by the executor, a roofline or a fit
to executor traces in the simulator).
"""

__version__ = "0.1.0"
