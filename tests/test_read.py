"""Reading records: damaged compressed files, parser limits, byte-order marks, chunking.

Every input record ends up a document or a reject with its file, line and reason; the
fast JSON path reads exactly what the standard library would.
"""

from __future__ import annotations

import gzip
import io
import json

import pytest
import zstandard

from pipelines import read
from pipelines.config import parse_job
from pipelines.plan import detect
from pipelines.read import Document, Reject, UnitReader
from pipelines.records import InputFile, Slice, UnitOptions
from pipelines.storage import StorageOptions
from pipelines.run import run_job
from pipelines.streams import StreamDamaged, chunks
from tests.helpers import local_tree, make_job


def options(on_error: str = "skip", **extra) -> UnitOptions:
    return UnitOptions(fingerprint="f", output_uri="", output_format="megatron",
                       storage_options=StorageOptions(),
                       tokenizer_path="", tokenizer_sha256="", eos=None, bos=None,
                       text_field="text", id_field="id", batch_documents=None,
                       max_segment_chars=32768, on_error=on_error, **extra)


def read_file(path, on_error="skip", doc_ids=False, **extra):
    """(texts, rejects, records) of a whole file read as one slice."""
    fmt, compression = detect(path.name, "auto")
    f = InputFile(uri=str(path), key=path.name, size=path.stat().st_size, version="1",
                  format=fmt, compression=compression)
    rejects: list[Reject] = []
    reader = UnitReader(options(on_error, **extra), rejects.append, doc_ids=doc_ids)
    texts = [t for b in reader.batches((Slice(f, 0, f.size),)) for t in b.texts]
    return texts, rejects, reader.records


LINES = [json.dumps({"id": i, "text": f"document number {i} " * 5}) for i in range(5000)]
DATA = ("\n".join(LINES) + "\n").encode()


@pytest.mark.parametrize("suffix,compress", [
    (".gz", lambda d: gzip.compress(d, mtime=0)),
    (".zst", lambda d: zstandard.ZstdCompressor().compress(d)),
])
def test_a_truncated_stream_keeps_every_record_before_the_damage(tmp_path, suffix, compress):
    blob = compress(DATA)
    path = tmp_path / f"a.jsonl{suffix}"
    path.write_bytes(blob[: len(blob) * 2 // 3])
    texts, rejects, records = read_file(path)
    # everything that decompresses cleanly, up to the last complete line, is kept
    decompressed = b""
    try:
        for chunk in chunks(io.BytesIO(path.read_bytes()), "gzip" if suffix == ".gz" else "zstd"):
            decompressed += chunk
    except StreamDamaged:
        pass
    complete = decompressed.count(b"\n")
    assert complete > 1000 and len(texts) == complete
    assert texts == [json.loads(line)["text"] for line in LINES[:complete]]
    (reject,) = rejects
    assert reject.line == complete + 1 and "truncated or corrupt" in reject.reason
    assert f"after line {complete}" in reject.reason and "rest of the file" in reject.reason
    assert records == complete + 1


def test_gzip_keeps_more_records_than_a_buffered_reader_would(tmp_path):
    blob = gzip.compress(DATA, mtime=0)
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    texts, _, _ = read_file(path)
    buffered = io.BufferedReader(gzip.GzipFile(fileobj=io.BytesIO(path.read_bytes())), 2**20)
    kept = 0
    try:
        while buffered.readline():
            kept += 1
    except EOFError:
        pass
    assert len(texts) > kept


@pytest.mark.parametrize("suffix,compress", [
    (".gz", lambda d: gzip.compress(d, mtime=0)),
    (".zst", lambda d: zstandard.ZstdCompressor().compress(d)),
])
def test_concatenated_members_and_frames_are_all_read(tmp_path, suffix, compress):
    half = len(DATA) // 2
    cut = DATA.index(b"\n", half) + 1
    path = tmp_path / f"a.jsonl{suffix}"
    path.write_bytes(compress(DATA[:cut]) + compress(DATA[cut:]))
    texts, rejects, _ = read_file(path)
    assert len(texts) == len(LINES) and not rejects


def test_gzip_zero_padding_is_not_damage(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(DATA, mtime=0) + b"\0" * 1000)
    texts, rejects, _ = read_file(path)
    assert len(texts) == len(LINES) and not rejects


def test_garbage_after_the_stream_is_reported(tmp_path):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(DATA) + b"not zstd at all")
    texts, rejects, _ = read_file(path)
    assert len(texts) == len(LINES)
    assert len(rejects) == 1 and "corrupt" in rejects[0].reason


@pytest.mark.parametrize("line,why", [
    ('{"text": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"text": "x", "n": ' + "9" * 100_000 + "}", "limit of the JSON parser"),
    ('{"text": "x", "n": 1e999999, "m": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
])
def test_records_beyond_the_parsers_limits_are_rejected_and_the_rest_kept(tmp_path, line, why):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(LINES[:3] + [line] + LINES[3:10]) + "\n")
    texts, rejects, records = read_file(path)
    assert len(texts) == 10 and records == 11
    (reject,) = rejects
    assert reject.line == 4 and why in reject.reason


def test_what_the_standard_library_accepts_is_kept(tmp_path):
    lines = ['{"text": "nan elsewhere", "score": NaN}', '{"text": "big", "n": 123456789012345678901234567890}',
             '{"text": "dup", "text": "last wins"}', '  {"text": "padded"}  ', '{"text": "crlf"}\r',
             "", "   ", '{"text": "\\u00e9t\\u00e9 \\ud83d\\ude80"}']
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    texts, rejects, records = read_file(path)
    assert texts == ["nan elsewhere", "big", "last wins", "padded", "crlf", "été 🚀"]
    assert not rejects and records == 6


def test_ids_beyond_64_bits_keep_every_digit(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": 123456789012345678901234567890, "text": "x"}\n{"text": "y"}\n')
    fmt, compression = detect(path.name, "auto")
    f = InputFile(uri=str(path), key="a.jsonl", size=path.stat().st_size, version="1",
                  format=fmt, compression=compression)
    reader = UnitReader(options(), lambda r: None, doc_ids=True)
    (batch,) = list(reader.batches((Slice(f, 0, f.size),)))
    assert batch.ids == ["123456789012345678901234567890", "a.jsonl@52"]


def test_a_lone_surrogate_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(LINES[0] + '\n{"text": "bad \\ud800 here"}\n' + LINES[1] + "\n")
    texts, rejects, _ = read_file(path)
    assert len(texts) == 2 and rejects[0].line == 2 and "unpaired surrogate" in rejects[0].reason


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_byte_order_mark_before_the_first_record_is_skipped(tmp_path, suffix):
    data = b"\xef\xbb\xbf" + DATA[:2000].rsplit(b"\n", 1)[0] + b"\n"
    path = tmp_path / f"a{suffix}"
    path.write_bytes(gzip.compress(data, mtime=0) if suffix.endswith(".gz") else data)
    texts, rejects, _ = read_file(path)
    assert not rejects and texts[0] == json.loads(LINES[0])["text"]


def test_a_byte_order_mark_in_a_text_file_is_not_text(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffplain text".encode())
    texts, rejects, _ = read_file(path)
    assert texts == ["plain text"] and not rejects


def test_lines_longer_than_a_read_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "READ_CHUNK_BYTES", 1000)
    long = [json.dumps({"text": ("word " * 3000) + str(i)}) for i in range(5)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(LINES[:50] + long + LINES[50:100]))  # no final newline
    texts, rejects, records = read_file(path)
    assert not rejects and records == 105
    assert texts == [json.loads(x)["text"] for x in LINES[:50] + long + LINES[50:100]]


def test_documents_carry_ids_only_when_the_output_keeps_them(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(LINES[:3]) + "\n")
    fmt, compression = detect(path.name, "auto")
    f = InputFile(uri=str(path), key="a.jsonl", size=path.stat().st_size, version="1",
                  format=fmt, compression=compression)
    reader = UnitReader(options(), lambda r: None)
    records = list(reader.records_of(Slice(f, 0, f.size)))
    assert records == [Document(json.loads(x)["text"]) for x in LINES[:3]]


def test_parquet_shards_do_not_depend_on_batch_settings(tmp_path, tokenizer_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_text("\n".join(LINES) + "\n")
    trees = []
    for n, batch in enumerate([{}, {"tokenizer.batch_chars": 5000},
                               {"tokenizer.batch_documents": 7}]):
        out = tmp_path / f"out{n}"
        run_job(parse_job(make_job(str(raw), str(tokenizer_file), str(out),
                                   **{"output.format": "parquet", **batch})))
        trees.append(local_tree(out))
    assert trees[0] == trees[1] == trees[2]


def test_read_ahead_keeps_order_and_raises_where_the_stream_did():
    import threading

    from pipelines.streams import read_ahead

    def damaged():
        yield b"a"
        yield b"b"
        raise StreamDamaged("gzip", "is truncated")

    got = []
    with pytest.raises(StreamDamaged):
        for item in read_ahead(damaged()):
            got.append(item)
    assert got == [b"a", b"b"]
    endless = read_ahead(iter([b"x"] * 10_000), depth=2)
    assert next(endless) == b"x"
    endless.close()  # the reader stops early: the thread ends before the file closes
    assert not any(t.name == "tokenyard-read-ahead" for t in threading.enumerate())
