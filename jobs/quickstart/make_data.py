"""Regenerate the quickstart's inputs and tokenizer: ``python jobs/quickstart/make_data.py``.

Writes three small JSON-lines files of generated English prose and code under ``raw/``
(plain, gzip and zstandard, each record with an ``id`` and a ``text``), then trains a
byte-level BPE of 8,192 tokens on them with ``<|endoftext|>`` as its special token and
writes it to ``tokenizer.json``. Rerunning on the same Python and library versions
reproduces the same bytes: the text comes from this Python's standard library.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

import zstandard

from pipelines.testing import corpus
from pipelines.train import train_bpe

HERE = Path(__file__).resolve().parent
#: (file name, seed, bytes of text)
FILES = (
    ("part-000.jsonl", 100, 1_500_000),
    ("part-001.jsonl.gz", 101, 1_500_000),
    ("part-002.jsonl.zst", 102, 1_500_000),
)
VOCAB_SIZE = 8192
EOS = "<|endoftext|>"


def _texts(path: Path):
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    for line in data.decode("utf-8").splitlines():
        yield json.loads(line)["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    out = parser.parse_args().out
    paths = []
    for name, seed, size in FILES:
        path = out / "raw" / name
        count = corpus.write_jsonl(path, size, seed, id_prefix=name.split(".")[0])
        paths.append(path)
        print(f"{path}: {count} records, {path.stat().st_size:,} bytes")
    texts = (text for path in paths for text in _texts(path))
    tokenizer = train_bpe(texts, vocab_size=VOCAB_SIZE, special_tokens=[EOS])
    (out / "tokenizer.json").write_bytes(tokenizer)
    print(f"{out / 'tokenizer.json'}: {len(tokenizer):,} bytes")


if __name__ == "__main__":
    main()
