"""The int8 scan's ONNX graph, written as protobuf bytes: no ``onnx`` package at run time.

The graph has seven nodes, so a hand-written encoder of the few ``onnx.proto`` messages it uses
(ModelProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto and the type messages) is
shorter than a 17 MB dependency; field numbers are those of ``onnx/onnx.proto``.

Per probe (row of ``probes``) and gallery row (column of ``codes``):
``scores = row_scales * ((probes - 128) @ codes) + bias`` (com.microsoft MatMulIntegerToFloat:
the integer sums are exact, one float multiply per score), then ``best`` = each probe's highest
score, ``pairs`` = every (probe, column) scoring at least ``best - margin`` (NonZero) and
``values`` = their scores (GatherND).
"""
from __future__ import annotations

OPSET, MICROSOFT_OPSET, IR_VERSION = 13, 1, 8
VARINT, LENGTH = 0, 2  # protobuf wire types
FLOAT, UINT8, INT8, INT64 = 1, 2, 3, 7  # onnx TensorProto.DataType
ATTRIBUTE_INT, ATTRIBUTE_INTS = 2, 7  # onnx AttributeProto.AttributeType
EXTERNAL = 1  # onnx TensorProto.DataLocation
PACKED_CODES = "codes"  # the external initializer's name (and nominal file, never read)


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative varints are needed here")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: an integer as a varint, a string or message as length-delimited bytes."""
    if isinstance(value, int):
        return _varint(number << 3 | VARINT) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | LENGTH) + _varint(len(data)) + data


def _value(name: str, element_type: int, dims: tuple[int | str, ...]) -> bytes:
    """ValueInfoProto of a tensor; a str dimension is symbolic (any size)."""
    shape = b"".join(_field(1, _field(2 if isinstance(dim, str) else 1, dim)) for dim in dims)
    tensor_type = _field(1, element_type) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _node(op_type: str, inputs: tuple[str, ...], outputs: tuple[str, ...], domain: str = "",
          **attributes: int | tuple[int, ...]) -> bytes:
    body = b"".join(_field(1, name) for name in inputs) + b"".join(_field(2, name) for name in outputs)
    body += _field(4, op_type) + (_field(7, domain) if domain else b"")
    for name, value in attributes.items():
        if isinstance(value, int):
            attribute = _field(1, name) + _field(20, ATTRIBUTE_INT) + _field(3, value)
        else:
            attribute = _field(1, name) + _field(20, ATTRIBUTE_INTS) + b"".join(_field(8, item) for item in value)
        body += _field(5, attribute)
    return body


def scan_model(dimension: int, packed_rows: int | None = None) -> bytes:
    """The serialised ModelProto; the probe count (``B``) and gallery columns (``N``) are symbolic.

    With ``packed_rows`` the codes are no input but an initializer of that many columns whose data
    is external, handed over with ``SessionOptions.add_external_initializers`` (no file is read, no
    bytes are copied into the model): ONNX Runtime then packs them once, when the session is made,
    instead of on every run."""
    nodes = [
        # inputs: A, B, a_scale, b_scale, a_zero_point, b_zero_point (none: codes are symmetric), bias
        _node("MatMulIntegerToFloat", ("probes", "codes", "probe_scale", "row_scales", "zero_point", "", "bias"),
              ("scores",), domain="com.microsoft"),
        _node("ReduceMax", ("scores",), ("best",), axes=(1,), keepdims=1),
        _node("Sub", ("best", "margin"), ("floor",)),
        _node("GreaterOrEqual", ("scores", "floor"), ("near",)),
        _node("NonZero", ("near",), ("pairs",)),
        _node("Transpose", ("pairs",), ("indices",), perm=(1, 0)),
        _node("GatherND", ("scores", "indices"), ("values",)),
    ]
    inputs = [_value("probes", UINT8, ("B", dimension)), _value("probe_scale", FLOAT, ()),
              _value("row_scales", FLOAT, ("N",)), _value("zero_point", UINT8, ()), _value("bias", FLOAT, ("N",)),
              _value("margin", FLOAT, ("B", 1))]
    outputs = [_value("pairs", INT64, (2, "C")), _value("best", FLOAT, ("B", 1)), _value("values", FLOAT, ("C",))]
    graph = b"".join(_field(1, node) for node in nodes) + _field(2, "int8-scan")
    if packed_rows is None:
        inputs.insert(1, _value("codes", INT8, (dimension, "N")))
    else:  # TensorProto: dims 1, data_type 2, name 8, external_data 13 (key 1, value 2), data_location 14
        location = _field(13, _field(1, "location") + _field(2, PACKED_CODES))
        external = _field(1, dimension) + _field(1, packed_rows) + _field(2, INT8) + _field(8, "codes")
        graph += _field(5, external + location + _field(14, EXTERNAL))
    graph += b"".join(_field(11, value) for value in inputs) + b"".join(_field(12, value) for value in outputs)
    opsets = b"".join(_field(8, _field(1, domain) + _field(2, version))
                      for domain, version in (("", OPSET), ("com.microsoft", MICROSOFT_OPSET)))
    return _field(1, IR_VERSION) + opsets + _field(7, graph)
