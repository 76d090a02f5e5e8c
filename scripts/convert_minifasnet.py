#!/usr/bin/env python3
"""Convert the Silent-Face MiniFASNet V2 + V1SE state dicts (Apache-2.0) into one ONNX file.

Set-up step, never run time: ``scripts/bootstrap.sh`` calls ``--check`` with the project
venv (stdlib only) and, when the converted file is missing or wrong, runs the conversion in
a throw-away venv with ``torch==2.13.0`` (CPU, from the local wheel) so the appliance itself
never needs PyTorch. The weights are read with ``torch.load(weights_only=True)`` (no pickled
code runs) into our own MiniFASNet definition, whose channel widths are read from the state
dict itself (the published "keep" tables are just those widths).

The single ONNX graph takes both crops (V2: face box x2.7, V1SE: x4.0; 80x80 BGR, raw 0-255,
NCHW float32) and returns both softmaxes, shape (N, 2, 3); class 1 = live. The pack manifest
(models/minifasnet-silentface/manifest.toml) names the input weights with their sha256 and
the converted file with its sha256, which this script checks after writing.
"""
from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "models" / "minifasnet-silentface" / "manifest.toml"
OPSET = 17


sys.path.insert(0, str(REPO))  # the conversion venv has no appliance installed; digests is stdlib-only
from appliance.digests import sha256_file as sha256_of  # noqa: E402


def default_weights_dir() -> Path:
    return Path(os.environ.get("APPLIANCE_SHARED_DATA", REPO.parent / "shared")) / "models"


def default_out_dir() -> Path:
    # keep in step with appliance.paths.converted_models_dir()
    return Path(os.environ.get("APPLIANCE_CONVERTED_MODELS", REPO / ".cache" / "models"))


def read_manifest(path: Path) -> dict:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    source = data["file"]["source"]
    return {
        "sha256": data["file"]["sha256"].lower(),
        "relpath": source["relpath"],
        "inputs": list(source["inputs"]),
        "input_sha256": [s.lower() for s in source["input_sha256"]],
    }


# -- the model (imported only when converting) ----------------------------------------------
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
    prefixes = ("module.model.", "module.", "model.")
    cleaned = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if not key.startswith("FTGenerator"):
            cleaned[key] = value
    return cleaned


def convert(weights: list[Path], out: Path) -> None:
    import torch
    from torch import nn

    models = [build_model(load_state(path)) for path in weights]

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.v2, self.v1se = models

        def forward(self, crop_v2, crop_v1se):
            return torch.stack([self.v2(crop_v2), self.v1se(crop_v1se)], dim=1)

    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter: small, deterministic
    torch.manual_seed(0)
    pair = Pair().eval()
    example = (torch.zeros(1, 3, 80, 80), torch.zeros(1, 3, 80, 80))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(
            pair, example, str(tmp), dynamo=False, opset_version=OPSET,
            input_names=["crop_v2", "crop_v1se"], output_names=["softmax"],
            dynamic_axes={"crop_v2": {0: "n"}, "crop_v1se": {0: "n"}, "softmax": {0: "n"}},
        )
    tmp.replace(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--weights-dir", type=Path, default=default_weights_dir(),
                        help="model folder holding minifasnet/*.pth (default $APPLIANCE_SHARED_DATA/models)")
    parser.add_argument("--out-dir", type=Path, default=default_out_dir(),
                        help="converted-model folder on the model search path (default .cache/models)")
    parser.add_argument("--check", action="store_true", help="exit 0 when the converted file is present and verified")
    parser.add_argument("--print-sha", action="store_true", help="convert and print the sha256 without checking it")
    args = parser.parse_args()
    spec = read_manifest(args.manifest)
    out = args.out_dir / spec["relpath"]
    if args.check:
        ok = out.is_file() and sha256_of(out) == spec["sha256"]
        print(f"{out}: {'ok' if ok else 'missing or outdated'}")
        return 0 if ok else 1
    weights = [args.weights_dir / rel for rel in spec["inputs"]]
    for path, expected in zip(weights, spec["input_sha256"]):
        if not path.is_file():
            print(f"convert_minifasnet: {path} not found (set APPLIANCE_SHARED_DATA)", file=sys.stderr)
            return 3
        if sha256_of(path) != expected:
            print(f"convert_minifasnet: {path}: sha256 mismatch", file=sys.stderr)
            return 7
    convert(weights, out)
    actual = sha256_of(out)
    if args.print_sha:
        print(actual)
        return 0
    if actual != spec["sha256"]:
        print(f"convert_minifasnet: {out}: sha256 {actual}, manifest expects {spec['sha256']}", file=sys.stderr)
        return 7
    print(f"converted {out} (sha256 ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
