"""A stand-in for libcamera's Python ColorSpace (src/py/libcamera/py_color_space.cpp, libcamera v0.7), used by the picamera2 fake."""

from __future__ import annotations

from enum import Enum
from typing import Any


# No __eq__ is bound in py_color_space.cpp, so two ColorSpace objects compare by identity: callers
# must compare the fields.
class _Primaries(Enum):
    Raw = 0
    Smpte170m = 1
    Rec709 = 2


class _Transfer(Enum):
    Linear = 0
    Srgb = 1
    Rec709 = 2


class _Encoding(Enum):
    Null = 0
    Rec601 = 1
    Rec709 = 2


class _Range(Enum):
    Full = 0
    Limited = 1


class ColorSpace:
    Primaries = _Primaries
    TransferFunction = _Transfer
    YcbcrEncoding = _Encoding
    Range = _Range

    def __init__(self, primaries: Any, transferFunction: Any = None, ycbcrEncoding: Any = None, range: Any = None) -> None:
        if isinstance(primaries, ColorSpace):  # the copy constructor
            primaries, transferFunction, ycbcrEncoding, range = (
                primaries.primaries,
                primaries.transferFunction,
                primaries.ycbcrEncoding,
                primaries.range,
            )
        self.primaries, self.transferFunction, self.ycbcrEncoding, self.range = primaries, transferFunction, ycbcrEncoding, range

    @staticmethod
    def Sycc() -> ColorSpace:
        return ColorSpace(_Primaries.Rec709, _Transfer.Srgb, _Encoding.Rec601, _Range.Full)

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace(_Primaries.Smpte170m, _Transfer.Rec709, _Encoding.Rec601, _Range.Limited)

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace(_Primaries.Rec709, _Transfer.Rec709, _Encoding.Rec709, _Range.Limited)


# picamera2/utils.py COLOUR_SPACE_TABLE; pipeline_base.cpp validColorSpaces (matched on primaries + transfer)
_TABLE = (ColorSpace.Sycc(), ColorSpace.Smpte170m(), ColorSpace.Rec709())


def valid_colour_space(cs: ColorSpace | None) -> ColorSpace:
    for entry in _TABLE:
        if cs is not None and (cs.primaries, cs.transferFunction) == (entry.primaries, entry.transferFunction):
            return entry
    return _TABLE[0]  # RPiCameraConfiguration::validateColorSpaces: "If no colour space was given anywhere, choose sYCC"
