"""A minimal ONNX reader: ModelProto → graph nodes, initializers and attributes as numpy arrays.

Only what small models like Silero need (no external data, no sparse tensors); it keeps the `onnx`
package out of the appliance. Field numbers follow onnx/onnx.proto.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# TensorProto.DataType → numpy dtype.
_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX model (as far as this reader looks)."""


@dataclass(frozen=True)
class Node:
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]  # int, float, bytes, np.ndarray, Graph, or lists of those


@dataclass(frozen=True)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    initializers: dict[str, np.ndarray]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def walk(self) -> Iterator[tuple[Graph, Node]]:
        """Every node, depth first, including those of If/Loop subgraphs, with its graph."""
        for node in self.nodes:
            yield self, node
            for value in node.attrs.values():
                for sub in value if isinstance(value, list) else [value]:
                    if isinstance(sub, Graph):
                        yield from sub.walk()


@dataclass(frozen=True)
class Model:
    ir_version: int
    opsets: dict[str, int]
    producer: str
    graph: Graph
    metadata: dict[str, str] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varint/fixed, a memoryview for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise OnnxFormatError("truncated field")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == _I32:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == _I64:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")
        if num == 0 or pos > end:
            raise OnnxFormatError("bad field")
        yield num, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(wire: int, value: Any) -> list[int]:
    """A repeated int64 field item: one varint, or a packed run of them."""
    if wire == _VARINT:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _floats(wire: int, value: Any) -> list[float]:
    raw = bytes(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw)) if wire == _LEN else [struct.unpack("<f", raw)[0]]


def _str(value: Any) -> str:
    return bytes(value).decode("utf-8")


def parse_tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    """(name, array) of a TensorProto: raw_data, or the float_data / int32_data / int64_data fields."""
    dims: list[int] = []
    dtype_code = 0
    name = ""
    raw: memoryview | None = None
    typed: list[float] = []
    for num, wire, value in _fields(buf):
        if num == 1:
            dims += _ints(wire, value)
        elif num == 2:
            dtype_code = value
        elif num == 8:
            name = _str(value)
        elif num == 9:
            raw = value
        elif num == 4:
            typed += _floats(wire, value)
        elif num in (5, 7):
            typed += _ints(wire, value)
        elif num in (6, 10, 11) or (num == 14 and value == 1):
            raise OnnxFormatError(f"tensor {name!r}: string, double, uint64 or external data unsupported")
    dtype = _DTYPES.get(dtype_code)
    if dtype is None:
        raise OnnxFormatError(f"tensor {name!r} has unsupported data type {dtype_code}")
    if raw is not None:
        # A read-only view into the file's bytes (no copy); callers copy what they keep.
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        if arr.dtype != dtype:
            arr = arr.astype(dtype)
    else:
        arr = np.array(typed, dtype=dtype)
    count = int(np.prod(dims)) if dims else 1
    if arr.size != count:
        raise OnnxFormatError(f"tensor {name!r}: {arr.size} values for shape {dims}")
    return name, arr.reshape(dims)


def _attribute(buf: memoryview) -> tuple[str, Any]:
    name = ""
    single: Any = None
    many: list[Any] = []
    for num, wire, value in _fields(buf):
        if num == 1:
            name = _str(value)
        elif num == 2:
            single = struct.unpack("<f", bytes(value))[0]
        elif num == 3:
            single = _signed(value)
        elif num == 4:
            single = bytes(value)
        elif num == 5:
            single = parse_tensor(value)[1]
        elif num == 6:
            single = parse_graph(value)
        elif num == 7:
            many += _floats(wire, value)
        elif num == 8:
            many += _ints(wire, value)
        elif num == 9:
            many.append(bytes(value))
        elif num == 10:
            many.append(parse_tensor(value)[1])
        elif num == 11:
            many.append(parse_graph(value))
    return name, single if single is not None else many


def _node(buf: memoryview) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    name = op_type = ""
    attrs: dict[str, Any] = {}
    for num, _wire, value in _fields(buf):
        if num == 1:
            inputs.append(_str(value))
        elif num == 2:
            outputs.append(_str(value))
        elif num == 3:
            name = _str(value)
        elif num == 4:
            op_type = _str(value)
        elif num == 5:
            key, attr = _attribute(value)
            attrs[key] = attr
    return Node(op_type, name, tuple(inputs), tuple(outputs), attrs)


def _value_info_name(buf: memoryview) -> str:
    return next((_str(v) for num, _w, v in _fields(buf) if num == 1), "")


def parse_graph(buf: memoryview) -> Graph:
    nodes: list[Node] = []
    inits: dict[str, np.ndarray] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    name = ""
    for num, _wire, value in _fields(buf):
        if num == 1:
            nodes.append(_node(value))
        elif num == 2:
            name = _str(value)
        elif num == 5:
            key, arr = parse_tensor(value)
            inits[key] = arr
        elif num == 11:
            inputs.append(_value_info_name(value))
        elif num == 12:
            outputs.append(_value_info_name(value))
    return Graph(name, tuple(nodes), inits, tuple(inputs), tuple(outputs))


def parse_model(data: bytes | mmap.mmap) -> Model:
    try:
        return _parse_model(memoryview(data))
    except (OnnxFormatError, ValueError, struct.error, UnicodeDecodeError, IndexError, RecursionError) as e:
        raise OnnxFormatError(f"not a valid ONNX file ({e})") from None


def _parse_model(buf: memoryview) -> Model:
    ir_version = 0
    producer = ""
    opsets: dict[str, int] = {}
    metadata: dict[str, str] = {}
    graph: Graph | None = None
    for num, _wire, value in _fields(buf):
        if num == 1:
            ir_version = value
        elif num == 2:
            producer = _str(value)
        elif num == 7:
            graph = parse_graph(value)
        elif num == 8:
            entry = {n: v for n, _w, v in _fields(value)}
            opsets[_str(entry.get(1, b""))] = int(entry.get(2, 0))
        elif num == 14:
            entry = {n: v for n, _w, v in _fields(value)}
            metadata[_str(entry.get(1, b""))] = _str(entry.get(2, b""))
    if graph is None or ir_version == 0:
        raise OnnxFormatError("no graph or IR version")
    return Model(ir_version, opsets, producer, graph, metadata)


def load_model(path: str | os.PathLike[str]) -> Model:
    """Parse a model file. Its tensors are read-only views of a private map of the file (no heap copy);
    the map goes away with the last of them."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return parse_model(b"")
        return parse_model(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def constants(graph: Graph) -> dict[str, np.ndarray]:
    """Initializers and Constant-node values of a graph and all its subgraphs, by tensor name."""
    out = dict(graph.initializers)
    seen = {id(graph)}
    for sub, node in graph.walk():
        if id(sub) not in seen:
            seen.add(id(sub))
            out.update(sub.initializers)
        if node.op_type == "Constant" and "value" in node.attrs:
            out[node.outputs[0]] = node.attrs["value"]
    return out
