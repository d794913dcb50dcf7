"""MessagePack for native-call payloads: the subset weir's natives speak
(nil, booleans, integers, floats, strings, bytes, arrays and maps).

Pure Python, since no compiled ``msgpack`` runs in the sandbox.
"""

import struct as _struct

__all__ = ["packb", "unpackb"]


def packb(value):
    """``value`` encoded as MessagePack bytes."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value, out):
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_int(value, out)
    elif isinstance(value, float):
        out.append(0xCB)
        out += _struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        _pack_length(len(data), out, fix=(0xA0, 31), codes=(0xD9, 0xDA, 0xDB))
        out += data
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        _pack_length(len(data), out, fix=None, codes=(0xC4, 0xC5, 0xC6))
        out += data
    elif isinstance(value, (list, tuple)):
        _pack_length(len(value), out, fix=(0x90, 15), codes=(None, 0xDC, 0xDD))
        for item in value:
            _pack(item, out)
    elif isinstance(value, dict):
        _pack_length(len(value), out, fix=(0x80, 15), codes=(None, 0xDE, 0xDF))
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise TypeError(f"cannot encode a {type(value).__name__} as MessagePack")


def _pack_int(value, out):
    if 0 <= value <= 0x7F:
        out.append(value)
    elif -32 <= value < 0:
        out.append(value & 0xFF)
    elif value >= 0:
        for code, fmt, top in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF), (0xCE, ">I", 0xFFFFFFFF), (0xCF, ">Q", 2**64 - 1)):
            if value <= top:
                out.append(code)
                out += _struct.pack(fmt, value)
                return
        raise OverflowError(f"{value} does not fit in 64 bits")
    else:
        for code, fmt, bottom in ((0xD0, ">b", -(2**7)), (0xD1, ">h", -(2**15)), (0xD2, ">i", -(2**31)), (0xD3, ">q", -(2**63))):
            if value >= bottom:
                out.append(code)
                out += _struct.pack(fmt, value)
                return
        raise OverflowError(f"{value} does not fit in 64 bits")


def _pack_length(length, out, fix, codes):
    """The header of a string, bytes, array or map of ``length`` items."""
    if fix is not None and length <= fix[1]:
        out.append(fix[0] | length)
        return
    for code, fmt, top in zip(codes, (">B", ">H", ">I"), (0xFF, 0xFFFF, 0xFFFFFFFF)):
        if code is not None and length <= top:
            out.append(code)
            out += _struct.pack(fmt, length)
            return
    raise OverflowError(f"{length} items is too many for MessagePack")


def unpackb(data):
    """The value MessagePack ``data`` encodes (all of it)."""
    value, end = _unpack(memoryview(data), 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes left after a MessagePack value")
    return value


_FIXED = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
_LENGTH = {
    0xC4: ("bin", ">B", 1), 0xC5: ("bin", ">H", 2), 0xC6: ("bin", ">I", 4),
    0xD9: ("str", ">B", 1), 0xDA: ("str", ">H", 2), 0xDB: ("str", ">I", 4),
    0xDC: ("array", ">H", 2), 0xDD: ("array", ">I", 4),
    0xDE: ("map", ">H", 2), 0xDF: ("map", ">I", 4),
}


def _unpack(data, at):
    code = data[at]
    at += 1
    if code <= 0x7F:
        return code, at
    if code >= 0xE0:
        return code - 0x100, at
    if 0x80 <= code <= 0x8F:
        return _items("map", code & 0x0F, data, at)
    if 0x90 <= code <= 0x9F:
        return _items("array", code & 0x0F, data, at)
    if 0xA0 <= code <= 0xBF:
        return _items("str", code & 0x1F, data, at)
    if code in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[code], at
    if code in _FIXED:
        fmt, size = _FIXED[code]
        return _struct.unpack(fmt, data[at:at + size])[0], at + size
    if code in _LENGTH:
        kind, fmt, size = _LENGTH[code]
        (length,) = _struct.unpack(fmt, data[at:at + size])
        return _items(kind, length, data, at + size)
    raise ValueError(f"MessagePack type 0x{code:02x} is not supported")


def _items(kind, length, data, at):
    if kind == "str":
        return str(data[at:at + length], "utf-8"), at + length
    if kind == "bin":
        return bytes(data[at:at + length]), at + length
    if kind == "array":
        items = []
        for _ in range(length):
            item, at = _unpack(data, at)
            items.append(item)
        return items, at
    result = {}
    for _ in range(length):
        key, at = _unpack(data, at)
        result[key], at = _unpack(data, at)
    return result, at
