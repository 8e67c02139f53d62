"""Byte-level BPE training: format of the result, round-trips, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from pipelines.testing import corpus
from pipelines.train import train_bpe

EOS = "<|endoftext|>"


def _train(total_bytes: int = 300_000, vocab_size: int = 1000) -> bytes:
    return train_bpe(corpus.documents(total_bytes, seed=7), vocab_size=vocab_size,
                     special_tokens=[EOS, "<|pad|>"])


@pytest.fixture(scope="module")
def trained() -> bytes:
    return _train()


def test_shape_of_the_tokenizer(trained):
    spec = json.loads(trained)
    assert spec["model"]["type"] == "BPE"
    assert spec["pre_tokenizer"]["type"] == "ByteLevel"
    assert spec["pre_tokenizer"]["use_regex"] is True
    assert spec["pre_tokenizer"]["add_prefix_space"] is False
    assert spec["decoder"]["type"] == "ByteLevel"
    assert spec["post_processor"] is None
    assert spec["normalizer"] is None
    tok = Tokenizer.from_str(trained.decode())
    assert tok.get_vocab_size() == 1000
    assert tok.token_to_id(EOS) == 0
    assert tok.token_to_id("<|pad|>") == 1


def test_decode_round_trips_any_text(trained):
    tok = Tokenizer.from_str(trained.decode())
    texts = [
        "Return the name (ID) of the current chunk.\n\n\tdef f(x):  return x ** 2\n",
        "文本被切分成工作单元 📦🚀 e\u0301 \u200b\u00a0 \u3000  trailing   ",
        "".join(chr(c) for c in range(0x20, 0x2000, 7)),
    ]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=True).ids
        assert tok.decode(ids) == text
    # nothing is unknown: every byte has a symbol
    assert None not in [tok.token_to_id(t) for t in tok.encode("\x00\x01ÿ").tokens]


def test_no_tokens_added_by_post_processing(trained):
    tok = Tokenizer.from_str(trained.decode())
    with_special = tok.encode("some text", add_special_tokens=True).ids
    assert with_special == tok.encode("some text", add_special_tokens=False).ids
    assert tok.token_to_id(EOS) not in with_special


def test_deterministic_in_process(trained):
    assert _train() == trained


def test_deterministic_across_processes_and_thread_counts(trained):
    code = (
        "import sys\n"
        "from pipelines.testing import corpus\n"
        "from pipelines.train import train_bpe\n"
        "sys.stdout.buffer.write(train_bpe(corpus.documents(300_000, seed=7), "
        "vocab_size=1000, special_tokens=['<|endoftext|>', '<|pad|>']))\n"
    )
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         check=True, timeout=60).stdout
    assert out == trained


def test_vocab_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="256 byte symbols"):
        train_bpe(["some text"], vocab_size=200, special_tokens=[EOS])
