"""Calibration: the simulator fitted to the executor (numpy and scipy; no torch, no SimPy).

``specgrove calibrate TRACES... --out PROFILE`` reads step traces (``specgrove.trace``),
fits the cost model (``cost_fit``) and the acceptance behaviour (``acceptance_fit``), and
writes a profile (``profile``) that a scenario names in ``[calibration] profile = "..."``,
replacing the roofline's constants and the synthetic draft's made-up parameters.
"""
