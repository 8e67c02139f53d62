"""A work unit to batches of documents, streaming; bad records become rejects.

Each format's reader yields typed records: a :class:`Document`, a :class:`Reject` (a
record, or the rest of a file, that cannot be tokenized, with its source, line or row
and a reason) or a :class:`StreamedText` (one document too large to hold as a string).
:meth:`UnitReader.batches` counts them in one place and groups documents into batches
of about ``batch_chars`` characters; under ``on_error: fail`` the first reject raises
:class:`InputError` instead. Readers hold one chunk of input and one batch in memory,
never a whole file.

JSONL is read in large chunks and each line parsed with orjson; a line orjson refuses
is parsed again with the standard library, which accepts what it accepts (``NaN``,
integers of any size, lone surrogates) and names the problem of what it does not, so
the orjson fast path changes nothing but speed. A line that breaks a parser's own limits
(nesting depth, digits in a number) is a reject like any other bad line. A UTF-8
byte-order mark before the first record of a file is skipped.

JSONL slices own every line that *starts* in their byte range, so the planner may cut
a file anywhere and each line is read exactly once. Line numbers of a slice that starts
mid-file are found lazily (by counting newlines before it) only when a reject needs one.

Compressed files are decompressed by :mod:`pipelines.streams`: a truncated or corrupt
stream keeps every record before the damage; the rest of the file is one reject that
names the line where the damage starts.

Text is valid here or rejected here: every :class:`Document` holds a ``str`` that the
tokenizer can encode (no unpaired surrogates), so encoding never has to reject one.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson

from pipelines import storage
from pipelines.defaults import DEFAULT_BATCH_CHARS
from pipelines.errors import InputError, TokenyardError
from pipelines.records import Slice, UnitOptions
from pipelines.streams import StreamDamaged, chunks, read_ahead

#: plain-text files larger than this are streamed, never held as one string
STREAM_TEXT_BYTES = 16 * 2**20
#: bytes read (and decompressed) at a time
READ_CHUNK_BYTES = 4 * 2**20
#: bytes read and decoded at a time from a streamed text file
STREAM_CHUNK_BYTES = 4 * 2**20
#: Parquet rows per Arrow batch
PARQUET_BATCH_ROWS = 8192
BOM = b"\xef\xbb\xbf"
_COUNT_CHUNK = 8 * 2**20


@dataclass(frozen=True, slots=True)
class Document:
    """One document's text; ``doc_id`` only when the output format keeps ids."""

    text: str
    doc_id: str | None = None


@dataclass(frozen=True)
class StreamedText:
    """A document too large to hold as one string: its text, decoded a chunk at a time.

    Python stores a string at the width of its widest character, so a single emoji can
    make a 300 MB document take 1.2 GB; this never builds that string. The reader has
    checked the whole stream already (valid UTF-8, undamaged).
    """

    uri: str
    storage_options: storage.StorageOptions
    compression: str | None
    doc_id: str | None = None

    def pieces(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        with storage.open_input(self.uri, self.storage_options) as f:
            for chunk in chunks(f, self.compression, size=STREAM_CHUNK_BYTES):
                yield decoder.decode(chunk)
        yield decoder.decode(b"", final=True)


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


Record = Document | Reject | StreamedText


@dataclass
class Batch:
    """Documents for one tokenizer call; ``ids`` is None when the output keeps no ids."""

    texts: list[str] = field(default_factory=list)
    ids: list[str] | None = None
    chars: int = 0
    #: a single huge document instead of ``texts``
    streamed: StreamedText | None = None

    def __len__(self) -> int:
        return 1 if self.streamed is not None else len(self.texts)


class UnitReader:
    """Streams a unit's documents in batches; counts records and reports rejects."""

    def __init__(self, options: UnitOptions, on_reject: Callable[[Reject], None], *,
                 doc_ids: bool = False, batch_chars: int | None = None) -> None:
        self.options = options
        self._on_reject = on_reject
        self.doc_ids = doc_ids
        self.batch_chars = batch_chars or getattr(options, "batch_chars", DEFAULT_BATCH_CHARS)
        self.batch_documents = options.batch_documents or float("inf")
        self.records = 0
        self.rejected = 0

    def reject(self, r: Reject) -> None:
        """Count a reject and report it; under ``on_error: fail`` raise it instead."""
        if self.options.on_error == "fail":
            raise r.error()
        self.records += r.records
        self.rejected += r.records
        self._on_reject(r)

    def records_of(self, s: Slice) -> Iterator[Record]:
        """The typed records of one slice, in input order."""
        if s.file.size == 0:
            return iter([Reject(s.file.key, "the file is empty")])
        read = {"jsonl": self._jsonl, "parquet": self._parquet, "text": self._text}
        return read[s.file.format](s)

    def batches(self, slices: tuple[Slice, ...]) -> Iterator[Batch]:
        new_batch = (lambda: Batch(ids=[])) if self.doc_ids else Batch
        batch = new_batch()
        texts, ids = batch.texts, batch.ids
        chars, limit_chars, limit_docs = 0, self.batch_chars, self.batch_documents
        documents = 0
        for s in slices:
            for record in self.records_of(s):
                if type(record) is Document:
                    texts.append(record.text)
                    if ids is not None:
                        ids.append(record.doc_id)
                    documents += 1
                    chars += len(record.text)
                    if chars >= limit_chars or len(texts) >= limit_docs:
                        batch.chars = chars
                        yield batch
                        batch = new_batch()
                        texts, ids, chars = batch.texts, batch.ids, 0
                elif type(record) is Reject:
                    self.reject(record)
                else:
                    documents += 1
                    if texts:
                        batch.chars = chars
                        yield batch
                        batch = new_batch()
                        texts, ids, chars = batch.texts, batch.ids, 0
                    yield Batch(streamed=record)
        self.records += documents
        if texts:
            batch.chars = chars
            yield batch

    # -- JSONL ----------------------------------------------------------------------

    def _jsonl(self, s: Slice) -> Iterator[Record]:
        key, opts = s.file.key, self.options
        text_field, want_ids = opts.text_field, self.doc_ids
        base_line: int | None = 1 if s.start == 0 else None

        def line_no(rel: int) -> int:
            nonlocal base_line
            if base_line is None:
                base_line = self._count_lines_before(s) + 1
            return base_line + rel

        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        rel = -1  # index in the slice of the last line read
        try:
            with storage.open_input(s.file.uri, opts.storage_options) as f:
                lines = _lines(f, s)
                try:
                    for offset, line in lines:
                        rel += 1
                        try:
                            record = loads(line)
                        except decode_error:
                            record = None
                        if type(record) is dict:
                            text = record.get(text_field)
                            if type(text) is str:
                                yield Document(text, self._doc_id(record, line, key, offset)
                                               if want_ids else None)
                                continue
                        slow = self._parse_line(line, key, text_field, offset,
                                                lambda: line_no(rel))
                        if slow is not None:
                            yield slow
                except StreamDamaged as err:
                    where = f"after line {line_no(rel)}" if rel >= 0 else "at its start"
                    yield Reject(key, f"the {s.file.compression} stream is truncated or corrupt "
                                      f"{where} ({err.reason}); the rest of the file cannot be "
                                      "read", line=line_no(rel + 1))
                finally:
                    lines.close()  # a read-ahead thread stops before the file closes
        except TokenyardError:
            raise
        except Exception as err:
            storage.raise_translated(err, s.file.uri, "read", opts.storage_options)

    def _doc_id(self, record: dict, line: bytes, key: str, offset: int) -> str:
        id_field = self.options.id_field
        value = record.get(id_field) if id_field is not None else None
        if value is None:
            return f"{key}@{offset}"
        if type(value) is float:  # orjson turns integers beyond 64 bits into floats
            value = json.loads(line.decode("utf-8", "replace"))[id_field]
        return str(value)

    def _parse_line(self, raw: bytes, key: str, text_field: str, offset: int,
                    line: Callable[[], int]) -> Record | None:
        """A line the fast path did not take: a document, a reject, or None (blank)."""
        stripped = raw.strip()
        if not stripped:
            return None
        try:
            decoded = stripped.decode("utf-8")
        except UnicodeDecodeError as err:
            return Reject(key, f"invalid UTF-8 (byte 0x{stripped[err.start]:02x} at column "
                               f"{err.start + 1})", line=line())
        try:
            record = json.loads(decoded)
        except json.JSONDecodeError as err:
            return Reject(key, f"not valid JSON ({err.msg} at column {err.colno})", line=line())
        except RecursionError:
            return Reject(key, "the record is nested too deeply for the JSON parser",
                          line=line())
        except ValueError as err:  # e.g. an integer longer than the parser's digit limit
            return Reject(key, f"the record breaks a limit of the JSON parser ({err})",
                          line=line())
        if not isinstance(record, dict):
            return Reject(key, f"a JSON object was expected, found a "
                               f"{type(record).__name__}", line=line())
        if text_field not in record:
            fields = ", ".join(list(record)[:8]) or "none"
            return Reject(key, f"the record has no '{text_field}' field (its fields: "
                               f"{fields}); set input.text_field if the text is under another "
                               "name", line=line())
        text = record[text_field]
        problem = _text_problem(text, text_field)
        if problem:
            return Reject(key, problem, line=line())
        doc_id = None
        if self.doc_ids:
            id_field = self.options.id_field
            value = record.get(id_field) if id_field is not None else None
            doc_id = f"{key}@{offset}" if value is None else str(value)
        return Document(text, doc_id)

    def _count_lines_before(self, s: Slice) -> int:
        """Newlines before the first line that starts in the slice (an error path only)."""
        with storage.open_input(s.file.uri, self.options.storage_options) as f:
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

    def _parquet(self, s: Slice) -> Iterator[Record]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        key, opts = s.file.key, self.options
        text_field, id_field = opts.text_field, opts.id_field
        try:
            with storage.open_input(s.file.uri, opts.storage_options) as f:
                pf = pq.ParquetFile(f)
                groups = list(range(s.start, min(s.stop, pf.metadata.num_row_groups)))
                n_rows = sum(pf.metadata.row_group(g).num_rows for g in groups)
                schema = pf.schema_arrow
                if text_field not in schema.names:
                    yield Reject(key, f"the Parquet file has no column '{text_field}' "
                                      f"(columns: {', '.join(schema.names[:8])}); set "
                                      "input.text_field", row=s.first_row,
                                 records=max(n_rows, 1))
                    return
                kind = schema.field(text_field).type
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                        or pa.types.is_string_view(kind)):
                    yield Reject(key, f"column '{text_field}' holds {kind}, not strings",
                                 row=s.first_row, records=max(n_rows, 1))
                    return
                columns = [text_field]
                with_ids = self.doc_ids and id_field and id_field in schema.names \
                    and id_field != text_field
                if with_ids:
                    columns.append(id_field)
                if not groups:
                    return
                row = s.first_row
                for rb in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups,
                                          columns=columns):
                    texts = rb.column(text_field).to_pylist()
                    ids = rb.column(id_field).to_pylist() if with_ids else None
                    for i, text in enumerate(texts):
                        problem = _text_problem(text, text_field)
                        if problem:
                            yield Reject(key, problem, row=row + i)
                            continue
                        if not self.doc_ids:
                            yield Document(text)
                            continue
                        doc_id = ids[i] if ids is not None else None
                        yield Document(text, str(doc_id) if doc_id is not None
                                       else f"{key}#{row + i}")
                    row += len(texts)
        except TokenyardError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            yield Reject(key, f"not a readable Parquet file ({err})", row=s.first_row)
        except Exception as err:
            storage.raise_translated(err, s.file.uri, "read", opts.storage_options)

    # -- plain text -----------------------------------------------------------------

    def _text(self, s: Slice) -> Iterator[Record]:
        """A text file is one document (its id is the file's key)."""
        key, opts = s.file.key, self.options
        streamed = s.file.size > STREAM_TEXT_BYTES
        decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        held: list[str] = []
        offset = lines = 0
        try:
            with storage.open_input(s.file.uri, opts.storage_options) as f:
                for chunk in chunks(f, s.file.compression, size=STREAM_CHUNK_BYTES):
                    try:
                        text = decoder.decode(chunk)
                    except UnicodeDecodeError as err:
                        # the error's offset counts from the decoder's buffered bytes too
                        at = max(err.start - (len(err.object) - len(chunk)), 0)
                        bad = err.object[err.start]
                        line = lines + chunk.count(b"\n", 0, at) + 1
                        yield Reject(key, f"invalid UTF-8 (byte 0x{bad:02x} at offset "
                                          f"{offset + at})", line=line)
                        return
                    if not streamed:
                        held.append(text)
                    offset += len(chunk)
                    lines += chunk.count(b"\n")
                decoder.decode(b"", final=True)
        except StreamDamaged as err:
            yield Reject(key, f"the {s.file.compression} stream is truncated or corrupt "
                              f"({err.reason}); the file is one document and cannot be read")
            return
        except UnicodeDecodeError:
            yield Reject(key, "invalid UTF-8 (the file ends inside a character)", line=lines + 1)
            return
        except TokenyardError:
            raise
        except Exception as err:
            storage.raise_translated(err, s.file.uri, "read", opts.storage_options)
        if streamed:
            yield StreamedText(s.file.uri, opts.storage_options, s.file.compression, key)
        else:
            yield Document("".join(held), key)


def _lines(f, s: Slice) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every line that starts in the slice, without its newline.

    A BOM before the first line of the file is dropped. Remote files are read ahead in a
    thread. A damaged compressed stream raises :class:`StreamDamaged` after the last
    complete line before the damage.
    """
    pos = s.start
    if s.start > 0:  # the line under way at the cut belongs to the slice before
        f.seek(s.start - 1)
        pos = s.start - 1 + len(f.readline())
    stop = s.stop if s.file.compression is None else float("inf")
    stream = chunks(f, s.file.compression, size=READ_CHUNK_BYTES)
    if not storage.is_local(s.file.uri):  # download while the caller tokenizes
        stream = read_ahead(stream)
    parts: list[bytes] = []  # a line that spans chunks
    try:
        while pos < stop:
            chunk = next(stream, None)
            if chunk is None:  # the end: a last line without a newline
                lines = [b"".join(parts)] if parts else []
            else:
                lines = chunk.split(b"\n")
                if parts:
                    if len(lines) == 1:
                        parts.append(chunk)
                        continue
                    lines[0] = b"".join([*parts, lines[0]])
                    parts = []
                tail = lines.pop()
                if tail:
                    parts.append(tail)
            for line in lines:
                if pos >= stop:
                    return
                offset = pos
                pos += len(line) + 1
                if offset == 0 and line.startswith(BOM):
                    line = line[len(BOM):]
                yield offset, line
            if chunk is None:
                return
    finally:
        stream.close()


def _text_problem(text, name: str) -> str | None:
    """Why a field's value cannot be tokenized, or None."""
    if text is None:
        return f"'{name}' is null"
    if not isinstance(text, str):
        return f"'{name}' is a {type(text).__name__}, not a string"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            return (f"the text holds an unpaired surrogate (\\u{ord(text[err.start]):04x} at "
                    f"character {err.start}), which is not valid Unicode")
    return None

