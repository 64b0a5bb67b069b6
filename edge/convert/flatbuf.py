"""Read and write TFLite flatbuffers as Python objects (LiteRT's generated schema; no TensorFlow import)."""

from __future__ import annotations

import sys
from typing import Any

from edge.errors import ModelError

IDENTIFIER = b"TFL3"


def read(data: bytes, where: str) -> Any:
    """The model as a mutable ModelT object tree."""
    from ai_edge_litert import schema_py_generated as schema

    if sys.byteorder != "little":
        raise ModelError(f"{where}: the converter needs a little-endian machine")
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ModelError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier); --source needs the float .tflite model")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ModelError(f"{where}: corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})") from exc


def write(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def opcode(model: Any, op: Any) -> int:
    """The builtin operator code; TF1-era files keep it in the deprecated byte."""
    code = model.operatorCodes[op.opcodeIndex]
    return int(max(code.deprecatedBuiltinCode, code.builtinCode))


def quantization(scale: float, zero: int) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    q = schema.QuantizationParametersT()
    q.scale = [scale]
    q.zeroPoint = [zero]
    return q
