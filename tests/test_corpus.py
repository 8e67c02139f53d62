"""The generated test corpus: reproducible, sized as asked, heavy-tailed, written reproducibly."""

from __future__ import annotations

import gzip
import json

import zstandard

from pipelines.testing import corpus


def test_same_seed_same_documents_other_seed_other_documents():
    a = list(corpus.documents(500_000, seed=3))
    assert a == list(corpus.documents(500_000, seed=3))
    assert a != list(corpus.documents(500_000, seed=4))


def test_total_size_and_length_distribution():
    docs = list(corpus.documents(5_000_000, seed=0))
    total = sum(len(d.encode("utf-8")) for d in docs)
    assert 5_000_000 <= total <= 5_000_000 * 1.01
    lengths = sorted(len(d) for d in docs)
    median = lengths[len(lengths) // 2]
    assert 300 < median < 3000
    assert lengths[-1] > 20 * median          # a heavy tail
    assert any(not d.isascii() for d in docs)  # some unicode
    assert all(d and d == d.strip() for d in docs)


def test_write_jsonl_is_reproducible_in_every_compression(tmp_path):
    for name, read in [("a.jsonl", lambda b: b), ("a.jsonl.gz", gzip.decompress),
                       ("a.jsonl.zst", lambda b: zstandard.ZstdDecompressor().decompressobj()
                        .decompress(b))]:
        n = corpus.write_jsonl(tmp_path / name, 200_000, seed=5, id_prefix="q")
        first = (tmp_path / name).read_bytes()
        corpus.write_jsonl(tmp_path / name, 200_000, seed=5, id_prefix="q")
        assert (tmp_path / name).read_bytes() == first
        records = [json.loads(line) for line in read(first).decode().splitlines()]
        assert len(records) == n
        assert records[0]["id"] == "q-000000"
        assert [r["text"] for r in records] == list(corpus.documents(200_000, seed=5))


def test_tiny_and_wide_tokenizers_share_ids():
    from tokenizers import Tokenizer

    tiny = Tokenizer.from_str(corpus.tiny_tokenizer_json().decode())
    wide = Tokenizer.from_str(corpus.wide_tokenizer_json().decode())
    assert tiny.get_vocab_size() == 512
    assert wide.get_vocab_size() >= 65_500
    text = "Conversion functions between RGB and other color systems. 文本"
    assert wide.encode(text).ids == tiny.encode(text).ids
