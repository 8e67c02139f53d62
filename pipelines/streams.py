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

:func:`read_ahead` runs such a stream in a thread a few chunks ahead of its reader, so
that a remote file downloads while the previous chunk is tokenized.
"""

from __future__ import annotations

import queue
import threading
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


def read_ahead(items: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """``items``, produced by a thread up to ``depth`` ahead of the consumer.

    For remote inputs: the next chunk downloads (and decompresses) while the caller
    tokenizes this one. Items, the end and any error arrive in order; closing the
    generator stops the thread before the caller closes the file it reads.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                q.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((False, err))

    thread = threading.Thread(target=produce, name="tokenyard-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if ok:
                yield item
            elif item is None:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()
