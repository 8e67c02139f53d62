"""A work unit to batches of documents, streaming; bad records become rejects.

Readers hold at most one batch (``batch_documents`` documents or ``batch_chars``
characters) in memory, never a whole file. Each record is either yielded as a document
or reported as a :class:`Reject` with its source, line or row and a reason; under
``on_error: fail`` the first reject raises :class:`InputError` instead.

JSONL slices own every line that *starts* in their byte range, so the planner may cut
a file anywhere and each line is read exactly once. Line numbers of a slice that starts
mid-file are found lazily (by counting newlines before it) only when a reject or an
error needs one.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipelines import storage
from pipelines.errors import InputError, TokenyardError
from pipelines.records import Slice, UnitOptions

#: a batch is flushed at this many characters even if it has fewer documents
DEFAULT_BATCH_CHARS = 8_000_000
#: plain-text files larger than this are streamed, never held as one string
STREAM_TEXT_BYTES = 16 * 2**20
#: bytes read and decoded at a time from a streamed text file
STREAM_CHUNK_BYTES = 4 * 2**20
_COUNT_CHUNK = 8 * 2**20


@dataclass
class Batch:
    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    chars: int = 0

    def add(self, text: str, doc_id: str) -> None:
        self.texts.append(text)
        self.ids.append(doc_id)
        self.chars += len(text)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class StreamedText:
    """A document too large to hold as one string: its text, decoded a chunk at a time.

    Python stores a string at the width of its widest character, so a single emoji can
    make a 300 MB document take 1.2 GB; this never builds that string.
    """

    uri: str
    storage: dict
    compression: str | None

    def pieces(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        with storage.open_input(self.uri, self.storage, self.compression) as f:
            while chunk := f.read(STREAM_CHUNK_BYTES):
                yield decoder.decode(chunk)
        yield decoder.decode(b"", final=True)


def _first_invalid_utf8(f) -> tuple[int, int, int] | None:
    """(byte offset, byte, line) of the first invalid UTF-8 in a stream; None if valid."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = lines = 0
    while True:
        chunk = f.read(STREAM_CHUNK_BYTES)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as err:
            # the error's offset counts from the decoder's buffered bytes plus this chunk
            buffered = len(err.object) - len(chunk)
            at = max(err.start - buffered, 0)
            bad = err.object[err.start]
            return offset + at, bad, lines + chunk.count(b"\n", 0, at) + 1
        if not chunk:
            return None
        offset += len(chunk)
        lines += chunk.count(b"\n")


@dataclass(frozen=True)
class Reject:
    """A record (or the rest of a file) that was not tokenized, and why."""

    source: str
    reason: str
    line: int | None = None
    row: int | None = None
    #: how many input records this entry stands for (a file without the text column: all)
    records: int = 1

    def to_dict(self) -> dict:
        d = {"source": self.source, "reason": self.reason, "records": self.records}
        if self.line is not None:
            d["line"] = self.line
        if self.row is not None:
            d["row"] = self.row
        return d

    def error(self) -> InputError:
        return InputError(self.source, self.reason, line=self.line, row=self.row)


_DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
try:
    import zstandard

    _DECOMPRESS_ERRORS += (zstandard.ZstdError,)
except ImportError:  # pragma: no cover - zstandard is a dependency
    pass


class UnitReader:
    """Streams a unit's documents; counts records and reports rejects."""

    def __init__(self, options: UnitOptions, on_reject: Callable[[Reject], None],
                 *, batch_chars: int = DEFAULT_BATCH_CHARS) -> None:
        self.options = options
        self._on_reject = on_reject
        self.batch_documents = options.batch_documents
        self.batch_chars = batch_chars
        self.records = 0
        self.rejected = 0

    # -- bookkeeping ------------------------------------------------------------

    def reject(self, r: Reject) -> None:
        if self.options.on_error == "fail":
            raise r.error()
        self.records += r.records
        self.rejected += r.records
        self._on_reject(r)

    def _full(self, batch: Batch) -> bool:
        return len(batch) >= self.batch_documents or batch.chars >= self.batch_chars

    def _check_text(self, text, name: str) -> str | None:
        if text is None:
            return f"'{name}' is null"
        if not isinstance(text, str):
            return f"'{name}' is a {type(text).__name__}, not a string"
        return None

    # -- entry point --------------------------------------------------------------

    def batches(self, slices: tuple[Slice, ...]) -> Iterator[Batch]:
        batch = Batch()
        for s in slices:
            if s.file.size == 0:
                self.reject(Reject(s.file.key, "the file is empty"))
                continue
            read = {"jsonl": self._jsonl, "parquet": self._parquet, "text": self._text}[
                s.file.format]
            for text, doc_id in read(s):
                if isinstance(text, StreamedText):
                    if batch:
                        yield batch
                    yield Batch([text], [doc_id])
                    batch = Batch()
                    continue
                batch.add(text, doc_id)
                if self._full(batch):
                    yield batch
                    batch = Batch()
        if batch:
            yield batch

    # -- JSONL ----------------------------------------------------------------------

    def _jsonl(self, s: Slice) -> Iterator[tuple[str, str]]:
        key, opts = s.file.key, self.options
        text_field, id_field = opts.text_field, opts.id_field
        base_line: list[int | None] = [1 if s.start == 0 else None]

        def line_no(rel: int) -> int:
            if base_line[0] is None:
                base_line[0] = self._count_lines_before(s) + 1
            return base_line[0] + rel

        f = storage.open_input(s.file.uri, opts.storage, s.file.compression)
        try:
            with f:
                pos = s.start
                if s.start > 0:
                    f.seek(s.start - 1)
                    pos = s.start - 1 + len(f.readline())
                stop = s.stop if not s.file.compression else float("inf")
                rel = -1
                while pos < stop:
                    try:
                        raw = f.readline()
                    except _DECOMPRESS_ERRORS as err:
                        reason = (f"the {s.file.compression} stream is truncated or corrupt after "
                                  f"line {line_no(rel)} ({type(err).__name__}); the rest of the "
                                  "file cannot be read")
                        self.reject(Reject(key, reason, line=line_no(rel + 1)))
                        return
                    if not raw:
                        break
                    offset, pos, rel = pos, pos + len(raw), rel + 1
                    doc = self._parse_line(raw, key, text_field, id_field, lambda: line_no(rel))
                    del raw  # a huge line: keep only its text while it is tokenized
                    if doc is not None:
                        yield doc[0], doc[1] or f"{key}@{offset}"
        except (TokenyardError, GeneratorExit):
            raise
        except Exception as err:
            raise storage.translate_error(err, s.file.uri, "read", opts.storage) from err

    def _parse_line(self, raw: bytes, key: str, text_field: str, id_field: str | None,
                    line: Callable[[], int]) -> tuple[str, str | None] | None:
        stripped = raw.strip()
        if not stripped:
            return None
        self.records += 1
        try:
            decoded = stripped.decode("utf-8")
        except UnicodeDecodeError as err:
            self._reject_counted(Reject(key, f"invalid UTF-8 (byte 0x{stripped[err.start]:02x} "
                                             f"at column {err.start + 1})", line=line()))
            return None
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as err:
            self._reject_counted(Reject(key, f"not valid JSON ({err.msg} at column {err.colno})",
                                        line=line()))
            return None
        if not isinstance(record, dict):
            self._reject_counted(Reject(key, f"a JSON object was expected, found a "
                                             f"{type(record).__name__}", line=line()))
            return None
        if text_field not in record:
            fields = ", ".join(list(record)[:8]) or "none"
            self._reject_counted(Reject(
                key, f"the record has no '{text_field}' field (its fields: {fields}); set "
                     "input.text_field if the text is under another name", line=line()))
            return None
        text = record[text_field]
        problem = self._check_text(text, text_field)
        if problem is None and "\\u" in decoded:
            problem = _surrogate_problem(text)
        if problem:
            self._reject_counted(Reject(key, problem, line=line()))
            return None
        doc_id = None
        if id_field is not None and record.get(id_field) is not None:
            doc_id = str(record[id_field])
        return text, doc_id

    def _reject_counted(self, r: Reject) -> None:
        """Reject a record already counted in ``records``."""
        if self.options.on_error == "fail":
            raise r.error()
        self.rejected += r.records
        self._on_reject(r)

    def _count_lines_before(self, s: Slice) -> int:
        """Newlines before the first line that starts in the slice (an error path only)."""
        with storage.open_input(s.file.uri, self.options.storage, s.file.compression) as f:
            f.seek(s.start - 1)
            first = s.start - 1 + len(f.readline())
            f.seek(0)
            count, pos = 0, 0
            while pos < first:
                chunk = f.read(min(_COUNT_CHUNK, first - pos))
                if not chunk:
                    break
                count += chunk.count(b"\n")
                pos += len(chunk)
            return count

    # -- Parquet --------------------------------------------------------------------

    def _parquet(self, s: Slice) -> Iterator[tuple[str, str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        key, opts = s.file.key, self.options
        text_field, id_field = opts.text_field, opts.id_field
        f = storage.open_input(s.file.uri, opts.storage)
        try:
            with f:
                pf = pq.ParquetFile(f)
                groups = list(range(s.start, min(s.stop, pf.metadata.num_row_groups)))
                n_rows = sum(pf.metadata.row_group(g).num_rows for g in groups)
                schema = pf.schema_arrow
                if text_field not in schema.names:
                    self.reject(Reject(
                        key, f"the Parquet file has no column '{text_field}' (columns: "
                             f"{', '.join(schema.names[:8])}); set input.text_field",
                        row=s.first_row, records=max(n_rows, 1)))
                    return
                kind = schema.field(text_field).type
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                        or pa.types.is_string_view(kind)):
                    self.reject(Reject(
                        key, f"column '{text_field}' holds {kind}, not strings",
                        row=s.first_row, records=max(n_rows, 1)))
                    return
                columns = [text_field]
                if id_field and id_field in schema.names and id_field != text_field:
                    columns.append(id_field)
                if not groups:
                    return
                row = s.first_row
                for rb in pf.iter_batches(batch_size=self.batch_documents, row_groups=groups,
                                          columns=columns):
                    texts = rb.column(text_field).to_pylist()
                    ids = rb.column(id_field).to_pylist() if len(columns) > 1 else None
                    for i, text in enumerate(texts):
                        self.records += 1
                        problem = self._check_text(text, text_field)
                        if problem:
                            self._reject_counted(Reject(key, problem, row=row + i))
                            continue
                        doc_id = ids[i] if ids is not None and ids[i] is not None else None
                        yield text, str(doc_id) if doc_id is not None else f"{key}#{row + i}"
                    row += len(texts)
        except (TokenyardError, GeneratorExit):
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            self.reject(Reject(key, f"not a readable Parquet file ({err})", row=s.first_row))
        except Exception as err:
            raise storage.translate_error(err, s.file.uri, "read", opts.storage) from err

    # -- plain text -----------------------------------------------------------------

    def _read_whole(self, s: Slice, use: Callable) -> tuple[bool, object]:
        """``(True, use(f))`` on the slice's file; ``(False, None)`` when its compressed
        stream is corrupt, which is rejected as the rest of the file."""
        key, opts = s.file.key, self.options
        try:
            with storage.open_input(s.file.uri, opts.storage, s.file.compression) as f:
                try:
                    return True, use(f)
                except _DECOMPRESS_ERRORS as err:
                    self.reject(Reject(key, f"the {s.file.compression} stream is truncated or "
                                            f"corrupt ({type(err).__name__})"))
                    return False, None
        except TokenyardError:
            raise
        except Exception as err:
            raise storage.translate_error(err, s.file.uri, "read", opts.storage) from err

    def _text(self, s: Slice) -> Iterator[tuple[str | StreamedText, str]]:
        if s.file.size > STREAM_TEXT_BYTES:
            yield from self._streamed_text(s)
            return
        ok, data = self._read_whole(s, lambda f: f.read())
        if not ok:
            return
        self.records += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            self._reject_counted(Reject(s.file.key, f"invalid UTF-8 (byte 0x{data[err.start]:02x} "
                                                    f"at offset {err.start})", line=line))
            return
        del data  # one copy of a huge document, not two
        yield text, s.file.key

    def _streamed_text(self, s: Slice) -> Iterator[tuple[StreamedText, str]]:
        """A large text file: checked in one streaming pass, then tokenized in another."""
        ok, invalid = self._read_whole(s, _first_invalid_utf8)
        if not ok:
            return
        self.records += 1
        if invalid is not None:
            offset, bad, line = invalid
            self._reject_counted(Reject(s.file.key, f"invalid UTF-8 (byte 0x{bad:02x} at "
                                                    f"offset {offset})", line=line))
            return
        opts = self.options
        yield StreamedText(s.file.uri, opts.storage, s.file.compression), s.file.key


def _surrogate_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (f"the text holds an unpaired surrogate (\\u{ord(text[err.start]):04x} at "
                f"character {err.start}), which is not valid Unicode")
    return None
