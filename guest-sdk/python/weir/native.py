"""The engine's native functions, called through weir's host bridge.

The step must declare each function it calls in the manifest
(``natives = ["gemm"]``).

- :func:`gemm` and :class:`Gemm` multiply ``f32`` matrices with the engine's
  ``gemm``; operands cross the sandbox boundary once each as raw bytes, or
  not at all when they are a :class:`Tensor` kept with the engine or a file.
- :func:`call` calls any native function by name with MessagePack payloads.

Operands are row-major ``f32`` values: an ``array.array('f')``, a
``memoryview`` or ``bytes`` of little-endian ``f32``, or any sequence of
numbers (slowest: converted first).
"""

import array as _array

from componentize_py_types import Err as _Err
from wit_world.imports import host as _host
from wit_world.imports import tensors as _tensors

from . import _msgpack

__all__ = ["NativeError", "call", "gemm", "Gemm", "Tensor"]


class NativeError(Exception):
    """A native function refused a call or failed; the message says why."""


def call(function, payload):
    """Calls native ``function`` with ``payload`` (MessagePack-encodable) and returns its decoded result."""
    try:
        result = _host.call_native(function, _msgpack.packb(payload))
    except _Err as err:
        raise NativeError(f"`{function}`: {err.value}") from None
    return _msgpack.unpackb(result)


def _raw(values):
    """The little-endian f32 bytes of ``values`` (WebAssembly is little-endian)."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        return bytes(values)
    if not (isinstance(values, _array.array) and values.typecode == "f"):
        values = _array.array("f", values)
    return values.tobytes()


class Tensor:
    """Values kept with the engine (on the step's GPU when it holds one) for later products.

    It counts against the step's memory limit until released (or until the
    step ends); its handle is valid only in the step execution that made it.
    Use it as a context manager, or call :meth:`release`.
    """

    def __init__(self, handle):
        """A tensor by a handle the engine gave (see :meth:`upload`)."""
        self.handle = handle

    @classmethod
    def upload(cls, values):
        """Keeps ``values`` with the engine and returns the tensor."""
        if isinstance(values, list):
            floats = values
        else:
            floats = _array.array("f")
            floats.frombytes(_raw(values))
            floats = floats.tolist()
        try:
            return cls(_tensors.upload(floats))
        except _Err as err:
            raise NativeError(err.value) from None

    def download(self):
        """A copy of its values, as ``array.array('f')``."""
        try:
            return _array.array("f", _tensors.download(self.handle))
        except _Err as err:
            raise NativeError(err.value) from None

    def release(self):
        """Frees it; its handle is invalid afterwards."""
        try:
            _tensors.release(self.handle)
        except _Err as err:
            raise NativeError(err.value) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _operand(value):
    if isinstance(value, Tensor):
        return _tensors.Operand_Tensor(value.handle)
    if isinstance(value, str):
        return _tensors.Operand_File(value)
    return _tensors.Operand_Raw(_raw(value))


class Gemm:
    """``C = op(A) · op(B)`` with the engine's ``gemm``: ``op(A)`` is ``m × k``,
    ``op(B)`` is ``k × n``, ``C`` is ``m × n``, all row-major; with
    ``trans_a``, ``A`` is stored as ``k × m`` (likewise ``trans_b``).

    An operand is values, a :class:`Tensor`, or the path of a file of
    little-endian ``f32`` under ``/in`` or ``/out``.
    """

    def __init__(self, m, n, k, trans_a=False, trans_b=False):
        self.shape = _tensors.GemmShape(m=m, n=n, k=k, trans_a=trans_a, trans_b=trans_b)

    def _run(self, a, b, into):
        try:
            return _tensors.gemm(self.shape, _operand(a), _operand(b), into)
        except _Err as err:
            raise NativeError(f"`gemm`: {err.value}") from None

    def values(self, a, b):
        """The product, as ``array.array('f')``."""
        return _array.array("f", self._run(a, b, _tensors.Destination_Values()).value)

    def to_tensor(self, a, b):
        """The product, kept with the engine as a new :class:`Tensor`."""
        return Tensor(self._run(a, b, _tensors.Destination_Tensor()).value)

    def to_file(self, a, b, path):
        """Writes the product to ``path`` under ``/out`` as little-endian ``f32``."""
        self._run(a, b, _tensors.Destination_File(path))


def gemm(m, n, k, a, b, trans_a=False, trans_b=False):
    """``C = op(A) · op(B)`` as ``array.array('f')``; see :class:`Gemm`."""
    return Gemm(m, n, k, trans_a, trans_b).values(a, b)
