"""CPU runtimes for the networks' heavy parts: eager PyTorch against OpenVINO (issue 25).

Usage (from the repository root; OpenVINO is not a nucflow dependency until it is measured faster):
    uv run --with openvino python benchmarks/bench_runtimes.py --threads 2 --out benchmarks/results/runtimes.md

Times the shipped Mask R-CNN's backbone + FPN (about what its passes cost, the heads aside) and one
shipped U-Net member on random inputs of two sizes, each runtime in turn in one run, and the largest
difference of their outputs. Timings are medians of `--repeat` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from presegment.storage import DEFAULT_MODEL, load_model
from unet_ensemble.storage import DEFAULT_ENSEMBLE, load_member
from workflow.core.files import write_text
from workflow.core.runtime import device_name

SHAPES = ((1, 3, 512, 512), (1, 3, 384, 640))


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def first_output(output: object) -> np.ndarray:
    """The first tensor of a network output (a tensor, or a dict of FPN levels)."""
    if isinstance(output, dict):
        output = next(iter(output.values()))
    return output.numpy() if isinstance(output, torch.Tensor) else np.asarray(output)


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presegmenter, _ = load_model(DEFAULT_MODEL)
    member, _ = load_member(DEFAULT_ENSEMBLE / "member-0")
    core = ov.Core()
    rows = []
    for name, network in (("Mask R-CNN backbone + FPN", presegmenter.backbone.eval()), ("U-Net member-0", member.eval())):
        compiled = core.compile_model(
            ov.convert_model(network, example_input=torch.rand(SHAPES[0]), input=[(-1, 3, -1, -1)]), "CPU", {"INFERENCE_NUM_THREADS": args.threads}
        )
        request = compiled.create_infer_request()
        for shape in SHAPES:
            x = torch.rand(shape)
            with torch.inference_mode():
                eager = median_seconds(lambda: network(x), args.repeat)
                reference = first_output(network(x))
                last = network.to(memory_format=torch.channels_last)  # how nucflow predicts (channels_last setting)
                x_last = x.contiguous(memory_format=torch.channels_last)
                eager_last = median_seconds(lambda: last(x_last), args.repeat)
                network.to(memory_format=torch.contiguous_format)
            openvino = median_seconds(lambda: request.infer({0: x.numpy()}), args.repeat)
            difference = float(np.abs(reference - first_output(list(request.infer({0: x.numpy()}).values())[0])).max())
            best = min(eager, eager_last)
            rows.append(
                f"| {name} | {shape[2]} x {shape[3]} | {eager * 1000:.0f} | {eager_last * 1000:.0f} | {openvino * 1000:.0f} | {best / openvino:.2f} | {difference:.1e} |"
            )
            print(rows[-1], flush=True)
    report = "\n".join(
        [
            "# Eager PyTorch against OpenVINO on this CPU",
            "",
            f"Machine: {device_name(torch.device('cpu'))}; torch {torch.__version__}, openvino {ov.__version__}; "
            f"{time.strftime('%Y-%m-%d')}. Median of {args.repeat} calls after a warm-up. `benchmarks/bench_runtimes.py`.",
            "",
            "| network | input | PyTorch ms | PyTorch channels-last ms | OpenVINO ms | speed-up over the faster PyTorch | largest output difference |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    if args.out:
        write_text(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
