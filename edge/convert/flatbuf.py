"""Read and write TFLite flatbuffers as Python objects (LiteRT's generated schema; no TensorFlow import)."""

from __future__ import annotations

import sys
from typing import Any

from edge.errors import ModelError

IDENTIFIER = b"TFL3"
# TFLite builtin operator codes (schema.fbs BuiltinOperator) of the ops the converter reads or edits.
ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, MUL, RESHAPE, RESIZE_BILINEAR, SOFTMAX = 0, 1, 3, 4, 18, 22, 23, 25
MEAN, CAST, QUANTIZE = 40, 53, 114
# TensorType values of the tensors the converter adds.
INT32, INT8 = 2, 9


def is_tflite(data: bytes) -> bool:
    """The cheap structural check before anything heavy: the TFLite file identifier at bytes 4..8."""
    return len(data) >= 8 and data[4:8] == IDENTIFIER


def check_identifier(data: bytes, where: str) -> None:
    if not is_tflite(data):
        raise ModelError(f"{where}: not a TFLite flatbuffer (no TFL3 identifier); --source needs the float .tflite model")


def read(data: bytes, where: str) -> Any:
    """The model as a mutable ModelT object tree."""
    from edge.model.runtime import tflite_schema

    schema = tflite_schema()
    if sys.byteorder != "little":
        raise ModelError(f"{where}: the converter needs a little-endian machine")
    check_identifier(data, where)
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
    from edge.model.runtime import tflite_schema

    q = tflite_schema().QuantizationParametersT()
    q.scale = [scale]
    q.zeroPoint = [zero]
    return q
