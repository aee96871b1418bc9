"""``specgrove profile --device cuda --shape llama-2-7b --random-weights --out DIR``: time the
runtime's forwards for a model shape, fit the cost model, and report the roofline's error."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specgrove.commands import UsageError, int_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--shape", default="demo-target", help="a model preset of the simulator (default demo-target)")
    parser.add_argument("--random-weights", action="store_true", required=True,
                        help="random weights of the shape (forward time does not depend on them); required")
    parser.add_argument("--gpu", help="the simulator's device preset to compare with (default: H100-SXM on cuda, "
                                      "cpu-2core on cpu)")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--tokens", default="1,8,32", help="new tokens per request")
    parser.add_argument("--contexts", default="128,1024", help="cached tokens per request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--out", required=True, help="directory for profile.json and profile.md")


def run(args: argparse.Namespace) -> int:
    from specgrove.sim.hardware import GPUS
    from specgrove.sim.models import MODELS

    if args.shape not in MODELS:
        raise UsageError(f"--shape: unknown model preset {args.shape!r}; valid: {', '.join(sorted(MODELS))}")
    gpu_name = args.gpu or ("H100-SXM" if args.device.startswith("cuda") else "cpu-2core")
    if gpu_name not in GPUS:
        raise UsageError(f"--gpu: unknown gpu preset {gpu_name!r}; valid: {', '.join(sorted(GPUS))}")
    batches, tokens, contexts = (int_list(v, f) for v, f in ((args.batches, "--batches"), (args.tokens, "--tokens"),
                                                          (args.contexts, "--contexts")))
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    import numpy as np
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available in this torch build")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    from tqdm import tqdm

    from specgrove.calibration.cost_fit import robust_fit
    from specgrove.executor.profile import profile_shape
    from specgrove.sim.costmodel import RooflineCostModel

    spec = MODELS[args.shape]
    bar = tqdm(total=len(batches) * len(tokens) * len(contexts), unit="point", desc=args.shape, leave=False)
    points = profile_shape(spec, args.device, dtype, batches, tokens, contexts, args.repeats, lambda p: bar.update(1))
    bar.close()
    x = np.array([[1.0, p.batch, p.batch * p.tokens_per_request, p.batch * p.context_per_request] for p in points])
    y = np.array([p.measured_s for p in points])
    coef = robust_fit(x, y)
    fitted = x @ coef
    roof = RooflineCostModel(GPUS[gpu_name], spec, spec)
    rows = []
    for p, f in zip(points, fitted):
        r = roof.target_forward_s(p.batch, p.batch * p.tokens_per_request, p.batch * p.context_per_request)
        rows.append({"batch": p.batch, "tokens_per_request": p.tokens_per_request,
                     "context_per_request": p.context_per_request, "measured_s": p.measured_s, "fitted_s": float(f),
                     "roofline_s": r, "roofline_rel_error": r / p.measured_s - 1})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    result = {"shape": args.shape, "device": args.device, "device_name": device_name, "dtype": str(dtype),
              "gpu_preset": gpu_name,
              "fit": {"target_base_s": coef[0], "target_per_request_s": coef[1], "target_per_token_s": coef[2],
                      "target_per_context_token_s": coef[3]},
              "points": rows}
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Forward profile: {args.shape} on {device_name} ({dtype}), random weights", "",
             f"Roofline preset: `{gpu_name}`. Fit: " + ", ".join(f"`{k}` {v:.3g}" for k, v in result["fit"].items()), "",
             "| batch | tokens/req | context/req | measured ms | fitted ms | roofline ms | roofline error |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['tokens_per_request']} | {r['context_per_request']} | {r['measured_s'] * 1e3:.3f} | "
              f"{r['fitted_s'] * 1e3:.3f} | {r['roofline_s'] * 1e3:.3f} | {r['roofline_rel_error']:+.0%} |" for r in rows]
    (out / "profile.md").write_text("\n".join(lines) + "\n")
    from specgrove.results import command_line, write_manifest

    write_manifest(out, command_line("profile", args))
    print("\n".join(lines))
    return 0
