#!/usr/bin/env python3
"""Quantise an ArcFace-style ONNX embedder (w600k-mbf) to int8 with ONNX Runtime's static QDQ tools.

Set-up step, never run time: ``appliance models convert`` runs this file by path, with
``python -I``, in the converter venv holding the manifest's ``converter_requires`` (onnx,
onnxruntime, numpy); the command line is the one every converter shares
(``appliance/packs/converters/__init__.py``) plus ``--calibration CROPS_NPY``: aligned
112x112 BGR uint8 crops of CALIBRATION identities only (celeba-dev split a), made by the
appliance's own detector and alignment before this script runs.

The float graph gets its input normalisation ((x - 127.5) / 127.5) folded in front, so the
int8 pack takes raw 0-255 RGB (``mean = 0``, ``std = 1`` in its manifest) and the numerical
check's integer reference images are in the model's real input range. Weights are int8 per
output channel, activations uint8 with ranges from the 99.99th percentile of the calibration
activations (min/max ranges, set by a few outliers, cost ~0.02 of cosine here). Depthwise
convolutions stay float: ONNX Runtime's x86 int8 depthwise kernels made the whole model 2x
slower than float on this CPU (measured: 26 ms against 12.7 ms per face, 1 thread), while the
pointwise convolutions and the final Gemm gain from int8.

Weights use 7 bits (``reduce_range``). An x86 CPU without VNNI multiplies uint8 activations by
int8 weights with ``pmaddubsw``, whose 16-bit sum of two full-range products saturates: a
full-range model converted and checked on an AVX2-only EPYC kept a minimum cosine of 0.954 with
the float model on the check's inputs (the bound is 0.95: another such CPU could fail set-up),
the 7-bit one 0.9725 on the same machine. VNNI and ARM's dot products do not saturate; the
model is made once and may be copied to either, so it is 7-bit everywhere.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

if __package__:
    from . import reference_inputs
else:  # run by path with -I: only this folder (stdlib-only siblings) goes on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reference_inputs

QDQ_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) needs opset 13
INPUT_NAME = "crop"  # raw 0-255 RGB, NCHW float32
OUTPUT_NAME = "embedding"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1 / 127.5
CALIBRATION_PERCENTILE = 99.99
QUANTISED_OPS = ["Conv", "Gemm"]


def normalised_graph(source: Path):
    """The float model at opset 13 with the pixel normalisation in front, renamed input/output."""
    import onnx
    from onnx import helper, numpy_helper, version_converter
    import numpy as np

    model = version_converter.convert_version(onnx.load(str(source)), QDQ_OPSET)
    graph = model.graph
    old_input, old_output = graph.input[0].name, graph.output[0].name
    graph.initializer.extend([numpy_helper.from_array(np.array(PIXEL_MEAN, np.float32), "pixel_mean"),
                              numpy_helper.from_array(np.array(PIXEL_SCALE, np.float32), "pixel_scale")])
    graph.node.insert(0, helper.make_node("Mul", ["centred", "pixel_scale"], [old_input], name="normalise_scale"))
    graph.node.insert(0, helper.make_node("Sub", [INPUT_NAME, "pixel_mean"], ["centred"], name="normalise_centre"))
    graph.input[0].name = INPUT_NAME
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "n"
    onnx.checker.check_model(model)
    return model


def depthwise_convolutions(model) -> list[str]:
    return [node.name for node in model.graph.node if node.op_type == "Conv"
            and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)]


def quantise(source: Path, calibration: Path, out: Path) -> int:
    """Write the int8 model; returns the number of calibration crops used."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = np.load(calibration, allow_pickle=False)
    if crops.ndim != 4 or crops.shape[1:] != (112, 112, 3) or crops.dtype != np.uint8 or not len(crops):
        raise SystemExit(f"quantise: {calibration} must hold N x 112 x 112 x 3 uint8 BGR crops, got "
                         f"{crops.shape} {crops.dtype}")
    tensors = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)

    class Crops(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter({INPUT_NAME: tensors[i:i + 1]} for i in range(len(tensors)))

        def get_next(self):
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        float_path, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(normalised_graph(source), str(float_path))
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(str(prepared), str(out), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        op_types_to_quantize=QUANTISED_OPS,
                        nodes_to_exclude=depthwise_convolutions(onnx.load(str(prepared))),
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE})
    return len(crops)


def reference_outputs(source: Path, spec: dict) -> dict:
    """The FLOAT model's outputs on the reference inputs: the manifest's expected values."""
    import numpy as np
    import onnxruntime as ort

    batches = reference_inputs.generate(spec["generator"], spec["seed"], spec["samples"], spec["inputs"])
    shape, values = batches[INPUT_NAME]
    pixels = np.frombuffer(values, dtype=np.float32).reshape(shape)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    features = session.run(None, {session.get_inputs()[0].name: (pixels - PIXEL_MEAN) * PIXEL_SCALE})[0]
    return {OUTPUT_NAME: features.astype(np.float64).tolist(), "reference_sha256": reference_inputs.digest(batches)}


def versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime

    return {"python": sys.version.split()[0], "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": numpy.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = reference_inputs.converter_parser(
        __doc__.splitlines()[0], "the float ONNX embedder",
        "print the float model's outputs on the reference inputs described by SPEC_JSON",
        "unused: calibration runs ONNX Runtime's default threads", "write the int8 ONNX file here", 1)
    parser.add_argument("--calibration", type=Path, help="aligned calibration crops (.npy, N x 112 x 112 x 3 uint8)")
    args = parser.parse_args(argv)
    if args.reference is not None:
        print(json.dumps(reference_outputs(args.inputs[0], json.loads(args.reference))))
        return 0
    if args.calibration is None:
        raise SystemExit("quantise: --calibration CROPS_NPY is required to quantise")
    count = quantise(args.inputs[0], args.calibration, args.out)
    print(json.dumps({"out": str(args.out), "threads": None, "calibration_crops": count, "versions": versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
