"""Compressed bodies that inflate to far more than is sent, built without holding what they
inflate to: a run of spaces is deflated a megabyte at a time, once, and the stream's checksum
is combined from the checksums of its parts rather than computed over them."""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Final, Literal

__all__ = ["Encoding", "compress_padded"]

Encoding = Literal["gzip", "deflate"]

# The spaces deflated by one cached piece; a longer run repeats the piece.
_RUN: Final = 1 << 20

# gzip (RFC 1952): deflate, no flags, no mtime, "maximum compression", OS unknown.
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
# zlib (RFC 1950), which is what HTTP's "deflate" names: a 32 KiB window, level 9.
_ZLIB_HEADER: Final = b"\x78\xda"

_CRC_POLY: Final = 0xEDB88320
_ADLER_BASE: Final = 65521


def _deflate(data: bytes, *, final: bool) -> bytes:
    """``data`` as raw deflate blocks from a fresh window, ending on a byte boundary.

    No block refers back past its own piece, so pieces can be laid end to end: the last one
    (``final``) ends the stream.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH
    )


@functools.cache
def _deflated_run() -> bytes:
    return _deflate(b" " * _RUN, final=False)


@functools.lru_cache(maxsize=64)
def _deflated_spaces(count: int) -> bytes:
    runs, rest = divmod(count, _RUN)
    return _deflated_run() * runs + (_deflate(b" " * rest, final=False) if rest else b"")


# -- checksums of concatenations, as zlib's crc32_combine and adler32_combine compute them --


def _gf2_multiply(a: int, b: int) -> int:
    """``a(x) * b(x)`` modulo the CRC-32 polynomial, in its bit-reflected form."""
    if a == 0:
        return 0
    m = 1 << 31
    product = 0
    while True:
        if a & m:
            product ^= b
            if a & (m - 1) == 0:
                return product
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _powers_of_x() -> tuple[int, ...]:
    """``x**(2**k)`` modulo the polynomial, for k from 0 to 31."""
    power = 1 << 30  # x**1
    powers = [power]
    for _ in range(31):
        power = _gf2_multiply(power, power)
        powers.append(power)
    return tuple(powers)


_X_TO_2_TO_K: Final = _powers_of_x()


def _crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of ``A + B`` from that of ``A``, that of ``B``, and the length of ``B``."""
    shift = 1 << 31  # x**0: multiply by x**(8 * length2), one power of two at a time
    k = 3
    n = length2
    while n:
        if n & 1:
            shift = _gf2_multiply(_X_TO_2_TO_K[k & 31], shift)
        n >>= 1
        k += 1
    return _gf2_multiply(shift, crc1) ^ crc2


def _adler32_combine(adler1: int, adler2: int, length2: int) -> int:
    """The Adler-32 of ``A + B`` from that of ``A``, that of ``B``, and the length of ``B``."""
    low1, high1 = adler1 & 0xFFFF, adler1 >> 16
    low2, high2 = adler2 & 0xFFFF, adler2 >> 16
    low = (low1 + low2 - 1) % _ADLER_BASE
    high = (high1 + high2 + length2 * low1 - length2) % _ADLER_BASE
    return (high << 16) | low


@functools.cache
def _crc32_of_run() -> int:
    return zlib.crc32(b" " * _RUN)


@functools.lru_cache(maxsize=64)
def _crc32_of_spaces(count: int) -> int:
    runs, rest = divmod(count, _RUN)
    crc = zlib.crc32(b" " * rest)
    unit, unit_length = _crc32_of_run(), _RUN
    while runs:
        if runs & 1:
            crc = _crc32_combine(crc, unit, unit_length)
        unit = _crc32_combine(unit, unit, unit_length)
        unit_length *= 2
        runs >>= 1
    return crc


def _adler32_of_spaces(count: int) -> int:
    # Each byte adds 32 to the low sum; the high sum adds up the low sums after each byte.
    low = (1 + 32 * count) % _ADLER_BASE
    high = (count + 32 * (count * (count + 1) // 2)) % _ADLER_BASE
    return (high << 16) | low


def compress_padded(head: bytes, spaces: int, tail: bytes, encoding: Encoding) -> bytes:
    """``head``, ``spaces`` spaces and ``tail``, compressed as HTTP's ``encoding`` names it.

    ``"gzip"`` is a gzip member (RFC 1952), ``"deflate"`` a zlib stream (RFC 1950), each with
    its checksum and length as a decompressor checks them. A few hundred megabytes of spaces
    compress to about a kilobyte per megabyte, and take microseconds once the first megabyte
    has been compressed.
    """
    deflated = _deflate(head, final=False) + _deflated_spaces(spaces) + _deflate(tail, final=True)
    if encoding == "gzip":
        crc = _crc32_combine(zlib.crc32(head), _crc32_of_spaces(spaces), spaces)
        crc = _crc32_combine(crc, zlib.crc32(tail), len(tail))
        size = len(head) + spaces + len(tail)
        return _GZIP_HEADER + deflated + struct.pack("<II", crc, size & 0xFFFFFFFF)
    adler = _adler32_combine(zlib.adler32(head), _adler32_of_spaces(spaces), spaces)
    adler = _adler32_combine(adler, zlib.adler32(tail), len(tail))
    return _ZLIB_HEADER + deflated + struct.pack(">I", adler)
