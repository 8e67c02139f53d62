"""Byte streams of input files, decompressed so that damage loses nothing before it.

:func:`chunks` yields a file's bytes (decompressed for ``gzip``/``zstd``) a bounded
chunk at a time. When a compressed stream is truncated or corrupt, it first yields every
byte that decompressed cleanly and then raises :class:`StreamDamaged`, so the reader keeps
every record up to the damage and rejects the rest with its line number.

Library readers do not allow this: ``gzip.GzipFile`` behind a buffered reader drops the
bytes of a read that hits the damage, and zstandard's ``stream_reader`` ends silently at
a truncated frame and stops after the first frame of a multi-frame file. Here gzip is
zlib with every member followed, and zstd is one decompression object per frame, with
the frame's end checked when the input ends.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

#: compressed bytes fed to a decompressor at a time
COMPRESSED_CHUNK_BYTES = 256 * 2**10
#: most decompressed bytes produced from one feed (gzip; bounds a decompression bomb)
MAX_CHUNK_BYTES = 8 * 2**20


class StreamDamaged(Exception):
    """A compressed stream ends early or holds bytes that do not decompress."""

    def __init__(self, compression: str, reason: str):
        super().__init__(compression, reason)
        self.compression = compression
        self.reason = reason

    def __str__(self) -> str:
        return f"the {self.compression} stream {self.reason}"


def chunks(f, compression: str | None, *, size: int = 4 * 2**20) -> Iterator[bytes]:
    """The bytes of open binary file ``f``, decompressed, in chunks of about ``size``."""
    if compression is None:
        while chunk := f.read(size):
            yield chunk
    elif compression == "gzip":
        yield from _gzip(f)
    elif compression == "zstd":
        yield from _zstd(f)
    else:  # pragma: no cover - plan.detect knows only these
        raise ValueError(f"unknown compression {compression!r}")


def _gzip(f) -> Iterator[bytes]:
    def step(d, data: bytes) -> Iterator[bytes]:
        out = d.decompress(data, MAX_CHUNK_BYTES)
        while True:
            if out:
                yield out
            if d.eof or not d.unconsumed_tail:
                return
            out = d.decompress(d.unconsumed_tail, MAX_CHUNK_BYTES)

    # gzip files may be padded with zero bytes between and after members (as gzip does)
    return _frames(f, "gzip", lambda: zlib.decompressobj(wbits=31), step, zlib.error,
                   padding=b"\x00")


def _zstd(f) -> Iterator[bytes]:
    import zstandard

    def step(d, data: bytes) -> Iterator[bytes]:
        out = d.decompress(data)
        if out:
            yield out

    return _frames(f, "zstd", lambda: zstandard.ZstdDecompressor().decompressobj(), step,
                   zstandard.ZstdError)


def _frames(f, name: str, new, step, error: type[Exception], *,
            padding: bytes | None = None) -> Iterator[bytes]:
    """Decompress every frame (gzip member, zstd frame) of ``f`` in turn."""
    d = None
    in_frame = False
    data = b""
    while True:
        if not data:
            data = f.read(COMPRESSED_CHUNK_BYTES)
            if not data:
                if in_frame:
                    raise StreamDamaged(name, "is truncated: it ends in the middle of "
                                              "compressed data")
                return
        if not in_frame:
            if padding is not None:
                data = data.lstrip(padding)
                if not data:
                    continue
            d, in_frame = new(), True
        try:
            yield from step(d, data)
        except error as err:
            raise StreamDamaged(name, f"is corrupt ({err})") from None
        in_frame = not d.eof
        data = d.unused_data if d.eof else b""
