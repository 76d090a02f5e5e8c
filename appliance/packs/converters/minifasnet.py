#!/usr/bin/env python3
"""Convert the Silent-Face MiniFASNet V2 + V1SE state dicts (Apache-2.0) into one ONNX file.

Set-up step, never run time: ``appliance models convert`` runs this file by path, with
``python -I``, in a throw-away venv holding only the manifest's ``converter_requires``
(torch, onnx), so the appliance itself never needs PyTorch. Standard library + torch + onnx
only (see ``appliance/packs/converters/__init__.py`` for the command line every converter
shares). The weights are read with ``torch.load(weights_only=True)`` (no pickled code runs)
into our own MiniFASNet definition, whose channel widths are read from the state dict itself
(the published "keep" tables are just those widths).

The single ONNX graph takes both crops (V2: face box x2.7, V1SE: x4.0; 80x80 BGR, raw 0-255,
NCHW float32) and returns both softmaxes, shape (N, 2, 3); class 1 = live. The exported
bytes depend on the CPU and thread count (float rounding in constant folding), so the file
is verified numerically against outputs of the original PyTorch model (``--reference``),
not by its sha256.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

if __package__:
    from . import reference_inputs
else:  # run by path with -I: only this folder (stdlib-only siblings) goes on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reference_inputs

OPSET = 17
INPUT_NAMES = ("crop_v2", "crop_v1se")  # in the order of --inputs: V2 (x2.7), V1SE (x4.0)
OUTPUT_NAME = "softmax"
INPUT_SHAPE = (3, 80, 80)  # per sample: BGR planes, 80x80
STATE_PREFIXES = ("module.model.", "module.", "model.")
TRAINING_ONLY_PREFIX = "FTGenerator"  # the auxiliary Fourier-spectrum branch, unused at inference


def build_model(state: dict):
    """A MiniFASNet (with SE blocks where the state dict has them) matching ``state``."""
    import torch
    from torch import nn

    class Named(nn.Module):
        def __init__(self, layers: dict):
            super().__init__()
            for name, layer in layers.items():
                self.add_module(name, layer)
            self.order = list(layers)

        def forward(self, x):
            for name in self.order:
                x = getattr(self, name)(x)
            return x

    def conv_block(prefix: str, stride: int, padding: int, activation: bool) -> nn.Module:
        weight = state[f"{prefix}.conv.weight"]
        out_c, in_per_group, kh, kw = weight.shape
        groups = out_c if in_per_group == 1 and kh > 1 else 1
        in_c = in_per_group * groups
        layers = {
            "conv": nn.Conv2d(in_c, out_c, (kh, kw), stride, padding, groups=groups, bias=False),
            "bn": nn.BatchNorm2d(out_c),
        }
        if activation:
            layers["prelu"] = nn.PReLU(out_c)
        return Named(layers)  # conv -> bn [-> prelu], keys as in the state dict

    class SE(nn.Module):
        def __init__(self, prefix: str):
            super().__init__()
            reduced, channels = state[f"{prefix}.fc1.weight"].shape[:2]
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(reduced)
            self.fc2 = nn.Conv2d(reduced, channels, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            w = torch.relu(self.bn1(self.fc1(self.pool(x))))
            return x * torch.sigmoid(self.bn2(self.fc2(w)))

    class DepthWise(nn.Module):
        """1x1 expand -> 3x3 depthwise -> 1x1 project (no activation) [-> SE] [+ shortcut]."""

        def __init__(self, prefix: str, stride: int, residual: bool):
            super().__init__()
            self.conv = conv_block(f"{prefix}.conv", 1, 0, True)
            self.conv_dw = conv_block(f"{prefix}.conv_dw", stride, 1, True)
            self.project = conv_block(f"{prefix}.project", 1, 0, False)
            self.se_module = SE(f"{prefix}.se_module") if f"{prefix}.se_module.fc1.weight" in state else None
            self.residual = residual

        def forward(self, x):
            y = self.project(self.conv_dw(self.conv(x)))
            if self.se_module is not None:
                y = self.se_module(y)
            return x + y if self.residual else y

    class Stage(nn.Module):
        def __init__(self, prefix: str):
            super().__init__()
            count = len({k.split(".")[2] for k in state if k.startswith(f"{prefix}.model.")})
            self.model = nn.Sequential(*[DepthWise(f"{prefix}.model.{i}", 1, True) for i in range(count)])

        def forward(self, x):
            return self.model(x)

    class MiniFASNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = conv_block("conv1", 2, 1, True)
            self.conv2_dw = conv_block("conv2_dw", 1, 1, True)
            self.conv_23 = DepthWise("conv_23", 2, False)
            self.conv_3 = Stage("conv_3")
            self.conv_34 = DepthWise("conv_34", 2, False)
            self.conv_4 = Stage("conv_4")
            self.conv_45 = DepthWise("conv_45", 2, False)
            self.conv_5 = Stage("conv_5")
            self.conv_6_sep = conv_block("conv_6_sep", 1, 0, True)
            self.conv_6_dw = conv_block("conv_6_dw", 1, 0, False)  # 5x5 over the 5x5 map
            embedding, flat = state["linear.weight"].shape
            self.linear = nn.Linear(flat, embedding, bias=False)
            self.bn = nn.BatchNorm1d(embedding)
            self.prob = nn.Linear(embedding, state["prob.weight"].shape[0], bias=False)

        def forward(self, x):
            for stage in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34, self.conv_4,
                          self.conv_45, self.conv_5, self.conv_6_sep, self.conv_6_dw):
                x = stage(x)
            return torch.softmax(self.prob(self.bn(self.linear(torch.flatten(x, 1)))), dim=1)

    model = MiniFASNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_state(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    cleaned = {}
    for key, value in state.items():
        for prefix in STATE_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if not key.startswith(TRAINING_ONLY_PREFIX):
            cleaned[key] = value
    return cleaned


def build_pair(weights: list[Path]):
    """Both networks in one module: (crop_v2, crop_v1se) -> softmaxes stacked as (N, 2, classes)."""
    import torch
    from torch import nn

    if len(weights) != len(INPUT_NAMES):
        raise SystemExit(f"minifasnet: expected {len(INPUT_NAMES)} state dicts (V2, V1SE), got {len(weights)}")
    models = [build_model(load_state(path)) for path in weights]

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.v2, self.v1se = models

        def forward(self, crop_v2, crop_v1se):
            return torch.stack([self.v2(crop_v2), self.v1se(crop_v1se)], dim=1)

    return Pair().eval()


def export(weights: list[Path], out: Path) -> None:
    import torch

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter: small, deterministic
    torch.manual_seed(0)
    pair = build_pair(weights)
    example = tuple(torch.zeros(1, *INPUT_SHAPE) for _ in INPUT_NAMES)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            pair, example, str(out), dynamo=False, opset_version=OPSET,
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: {0: "n"} for name in INPUT_NAMES}, OUTPUT_NAME: {0: "n"}},
        )


def reference_outputs(weights: list[Path], spec: dict) -> dict[str, list]:
    """The PyTorch model's outputs on the reference inputs: the manifest's expected values."""
    import torch

    batches = reference_inputs.generate(spec["generator"], spec["seed"], spec["samples"], spec["inputs"])
    missing = set(INPUT_NAMES) - set(batches)
    if missing:
        raise SystemExit(f"minifasnet: the check spec has no shape for {sorted(missing)}")
    feeds = [torch.frombuffer(bytearray(batches[name][1]), dtype=torch.float32).reshape(batches[name][0])
             for name in INPUT_NAMES]
    with torch.no_grad():
        output = build_pair(weights)(*feeds)
    return {OUTPUT_NAME: output.double().tolist(), "reference_sha256": reference_inputs.digest(batches)}


def versions() -> dict[str, str]:
    import onnx
    import torch

    return {"python": sys.version.split()[0], "torch": torch.__version__, "onnx": onnx.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = reference_inputs.converter_parser(
        __doc__.splitlines()[0], "V2 then V1SE state dict (.pth)",
        "print the PyTorch outputs on the reference inputs described by SPEC_JSON",
        "torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.reference is not None:
        print(json.dumps(reference_outputs(args.inputs, json.loads(args.reference))))
        return 0
    export(args.inputs, args.out)
    print(json.dumps({"out": str(args.out), "threads": torch.get_num_threads(), "versions": versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
