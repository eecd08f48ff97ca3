"""Reader for the IDX format used by MNIST and Fashion-MNIST (optionally gzipped)."""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .types import DataFormatError

# type code (third magic byte) -> big-endian element type
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip, detected by content) into a native-endian array."""
    path = Path(path)
    buf = path.read_bytes()
    if buf[:2] == b"\x1f\x8b":
        try:
            buf = gzip.decompress(buf)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: corrupt gzip data ({e})") from e
    return parse_idx(buf, source=str(path))


def parse_idx(buf: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes: magic 00 00 <type> <ndim>, ndim big-endian uint32 dims, then data."""
    if len(buf) < 4:
        raise DataFormatError(f"{source}: too short for an IDX header ({len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0:
        raise DataFormatError(
            f"{source}: bad IDX magic number 0x{buf[:4].hex()} (must start with two zero bytes)")
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise DataFormatError(f"{source}: unknown IDX element type 0x{code:02x} in magic number")
    if ndim == 0:
        raise DataFormatError(f"{source}: IDX magic number declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataFormatError(f"{source}: truncated IDX header ({ndim} dimensions declared)")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(buf) - header != expected:
        raise DataFormatError(f"{source}: IDX shape {dims} needs {expected} data bytes, "
                              f"file has {len(buf) - header}")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # copy: writable and native byte order
