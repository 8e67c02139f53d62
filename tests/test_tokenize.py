"""Encoding batches: ids, lengths, dtype, segmenting of long documents, invalid text, caching."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, trainers

from pipelines.errors import TokenizerError
from pipelines.testing import corpus
from pipelines.tokenize import (
    Encoder,
    InvalidTextError,
    SEGMENT_WINDOW_CHARS,
    check_text,
    get_encoder,
)

EOS = "<|endoftext|>"
SEGMENT = 1024  # the smallest segment length a job may set: many cuts in short texts


def _split(tokens: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(lengths)
    return [tokens[end - n:end].tolist() for n, end in zip(lengths, ends)]


def _reference(data: bytes, texts: list[str]) -> list[list[int]]:
    tok = Tokenizer.from_str(data.decode())
    return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]


def _trained(pre_tokenizer, normalizer=None, added=()) -> bytes:
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        tok.normalizer = normalizer
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]", EOS],
                                  show_progress=False)
    tok.train_from_iterator(corpus.documents(150_000, seed=11), trainer=trainer)
    if added:
        tok.add_special_tokens(list(added))
    return tok.to_str().encode()


@pytest.fixture(scope="module")
def gpt2() -> bytes:
    """A GPT-2-style byte-level BPE (ByteLevel pre-tokenizer with the GPT-2 regex)."""
    spec = json.loads(corpus.tiny_tokenizer_json(1024))
    spec["added_tokens"].append({"id": 1024, "content": "<mask>", "single_word": False,
                                 "lstrip": True, "rstrip": True, "normalized": False,
                                 "special": True})
    return json.dumps(spec).encode()


TOKENIZERS = {
    "bytelevel-prefix-space": lambda: _trained(pre_tokenizers.ByteLevel(add_prefix_space=True)),
    "metaspace": lambda: _trained(pre_tokenizers.Metaspace()),
    "whitespace-nfkc-lowercase": lambda: _trained(
        pre_tokenizers.Whitespace(),
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])),
    "bert": lambda: _trained(pre_tokenizers.BertPreTokenizer(), normalizers.BertNormalizer(),
                             added=[AddedToken("[MASK]", lstrip=True)]),
    "digits-punctuation": lambda: _trained(pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation()])),
}

ATOMS = [
    " ", "  ", "   \t ", " " * 300, "\n", "\n\n", "\r\n", "\n \n  \n", "\t\t\t",
    "word", " word", "Word's", " don't", "x" * 40, "文本被切分成工作单元", "데이터는",
    "📦🚀", "👩‍💻", "e\u0301", "Z\u0351\u0334a\u0336", "\u200b", "\u00a0", "\u3000",
    "1234567890", " 3.14159", "!!!", "?!.,;:", "...", "—", "«»", "(((", "))) ",
    EOS, f" {EOS} ", f"{EOS}{EOS}", "<mask>", " <mask> ", "[MASK]", " [MASK]",
    "<|endoftext", "|>",
]


def _adversarial(seed: int, length: int) -> str:
    rng = random.Random(seed)
    prose = list(corpus.documents(20_000, seed=seed))
    parts: list[str] = []
    size = 0
    while size < length:
        if rng.random() < 0.3:
            part = rng.choice(prose)[: rng.randrange(1, 400)]
        else:
            part = rng.choice(ATOMS) * rng.choice([1, 1, 1, 2, 5, 50])
        parts.append(part)
        size += len(part)
    return "".join(parts)


def _assert_exact(data: bytes, texts: list[str], *, min_segments: int = 2) -> Encoder:
    encoder = Encoder(data, eos=EOS, max_segment_chars=SEGMENT)
    tokens, lengths = encoder.encode(texts)
    expected = [ids + [encoder.eos_id] for ids in _reference(data, texts)]
    got = _split(tokens, lengths)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"document {i}: tokens differ from encoding it whole"
    assert len(got) == len(texts)
    for text in texts:
        pieces = encoder.segments(text)
        assert "".join(pieces) == text
        if len(text) > 4 * SEGMENT:
            assert len(pieces) >= min_segments
    return encoder


# -- basics ---------------------------------------------------------------------------


def test_encode_flat_ids_and_lengths(gpt2):
    texts = list(corpus.documents(100_000, seed=2))
    encoder = Encoder(gpt2, eos=EOS)
    tokens, lengths = encoder.encode(texts)
    assert tokens.dtype == np.uint16 and encoder.dtype == np.uint16
    assert lengths.dtype == np.int64 and len(lengths) == len(texts)
    assert int(lengths.sum()) == len(tokens)
    assert _split(tokens, lengths) == [ids + [encoder.eos_id] for ids in _reference(gpt2, texts)]
    assert encoder.vocab_size == 1025
    assert len(encoder.sha256) == 64


def test_bos_and_eos_and_neither(gpt2):
    texts = ["first document", "", "third"]
    ref = _reference(gpt2, texts)
    both = Encoder(gpt2, eos=EOS, bos="<mask>")
    tokens, lengths = both.encode(texts)
    assert _split(tokens, lengths) == [[both.bos_id] + r + [both.eos_id] for r in ref]
    neither = Encoder(gpt2, eos=None)
    tokens, lengths = neither.encode(texts)
    assert lengths.tolist() == [len(r) for r in ref] and _split(tokens, lengths) == ref
    tokens, lengths = neither.encode([])
    assert tokens.dtype == np.uint16 and len(tokens) == len(lengths) == 0


def test_wide_vocabulary_uses_int32():
    texts = ["Compute the CRC32 primitive on one byte.", "文本 📦"]
    wide = Encoder(corpus.wide_tokenizer_json(), eos=EOS)
    tiny = Encoder(corpus.tiny_tokenizer_json(), eos=EOS)
    assert wide.dtype == np.int32 and wide.vocab_size >= 65_500
    w, wl = wide.encode(texts)
    t, tl = tiny.encode(texts)
    assert w.dtype == np.int32 and w.tolist() == t.tolist() and wl.tolist() == tl.tolist()


def test_missing_special_token_names_token_tokenizer_and_fix(gpt2):
    with pytest.raises(TokenizerError) as info:
        Encoder(gpt2, eos="</s>", name="s3://models/x/tokenizer.json")
    message = str(info.value)
    assert "'</s>'" in message and "s3://models/x/tokenizer.json" in message
    assert "tokenizer.eos" in message
    with pytest.raises(TokenizerError, match="bos token '<s>'"):
        Encoder(gpt2, eos=EOS, bos="<s>")


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b'{"version": "1.0"}', b"[]"])
def test_invalid_tokenizer_file(data):
    with pytest.raises(TokenizerError, match="tok.json"):
        Encoder(data, eos=EOS, name="tok.json")


def test_get_encoder_is_cached_per_bytes_and_options(gpt2):
    a = get_encoder(gpt2, eos=EOS)
    assert get_encoder(bytes(gpt2), eos=EOS, name="elsewhere.json") is a
    assert get_encoder(gpt2, eos=None) is not a
    assert get_encoder(gpt2, eos=EOS, max_segment_chars=4096) is not a
    assert get_encoder(gpt2, eos=EOS) is a


# -- invalid text -----------------------------------------------------------------------


def test_check_text_accepts_any_unicode_and_names_a_lone_surrogate_or_a_non_string():
    assert check_text("plain") is None
    assert check_text("文本 📦 e\u0301") is None
    reason = check_text(json.loads('"ab\\ud800cd"'))
    assert "U+D800" in reason and "character 2" in reason
    assert "not a string" in check_text(None)
    assert "not a string" in check_text(b"bytes")


def test_encode_names_the_first_invalid_document(gpt2):
    encoder = Encoder(gpt2, eos=EOS)
    texts = ["fine", "also fine 文本", json.loads('"lone \\udc80 surrogate"'), None]
    with pytest.raises(InvalidTextError) as info:
        encoder.encode(texts)
    assert info.value.index == 2 and "U+DC80" in info.value.reason
    assert "document 2" in str(info.value)
    # the rest still encodes
    tokens, lengths = encoder.encode(texts[:2])
    assert len(lengths) == 2


# -- long documents ---------------------------------------------------------------------


def test_segments_of_generated_text_are_exact(gpt2):
    texts = [t for t in corpus.documents(1_500_000, seed=9) if len(t) > SEGMENT]
    encoder = _assert_exact(gpt2, texts + list(corpus.documents(30_000, seed=1)))
    sizes = [len(p) for t in texts for p in encoder.segments(t)]
    # ordinary text nearly always has a safe cut within reach of the wanted length
    assert sum(size <= SEGMENT for size in sizes) >= 0.95 * len(sizes)
    assert max(sizes) <= 2 * SEGMENT


@pytest.mark.parametrize("seed", range(12))
def test_segments_of_adversarial_text_are_exact_gpt2(gpt2, seed):
    _assert_exact(gpt2, [_adversarial(seed, 12_000 + 1000 * seed) for _ in range(1)])


@pytest.mark.parametrize("family", sorted(TOKENIZERS))
def test_segments_are_exact_for_other_pre_tokenizers(family):
    data = TOKENIZERS[family]()
    texts = [_adversarial(100 + seed, 10_000) for seed in range(6)]
    texts += [t for t in corpus.documents(400_000, seed=4) if len(t) > SEGMENT][:8]
    _assert_exact(data, texts)


def test_cuts_never_split_whitespace_runs_or_special_tokens(gpt2):
    encoder = Encoder(gpt2, eos=EOS, max_segment_chars=SEGMENT)
    text = ("word " * 150 + " " * 600 + EOS * 40 + "\n" * 500 + "x y ") * 10
    pieces = encoder.segments(text)
    assert len(pieces) > 5
    cut = 0
    for left, right in zip(pieces, pieces[1:]):
        cut += len(left)
        assert not (left[-1].isspace() and right[0].isspace())
        for start in range(cut - len(EOS) + 1, cut):
            assert not text.startswith(EOS, start), f"cut at {cut} splits {EOS}"


def test_no_boundary_keeps_the_run_whole_and_is_deterministic(gpt2):
    encoder = Encoder(gpt2, eos=EOS, max_segment_chars=SEGMENT)
    run = "QmFzZVNpeHRvdXI" * 1100  # 16,500 letters: one pre-token
    text = "head text " * 50 + run + " tail text" * 300
    pieces = encoder.segments(text)
    assert any(run in p for p in pieces)
    assert pieces == encoder.segments(text)
    _assert_exact(gpt2, [text, "x" * 20_000, "文本被切分成工作单元" * 2000, " " * 20_000],
                  min_segments=1)


def test_tokenizer_without_pre_tokenizer_is_not_segmented(caplog):
    spec = json.loads(corpus.tiny_tokenizer_json())
    spec["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    spec["pre_tokenizer"] = None
    data = json.dumps(spec).encode()
    encoder = Encoder(data, eos=EOS, max_segment_chars=SEGMENT)
    assert "no pre-tokenizer" in caplog.text
    text = _adversarial(5, 6000)
    assert not encoder.segmentable and encoder.segments(text) == [text]
    tokens, lengths = encoder.encode([text])
    assert tokens.tolist() == _reference(data, [text])[0] + [encoder.eos_id]


def test_window_must_fit_in_a_segment(gpt2):
    with pytest.raises(ValueError, match="max_segment_chars"):
        Encoder(gpt2, eos=EOS, max_segment_chars=4 * SEGMENT_WINDOW_CHARS - 1)


# -- memory guard -----------------------------------------------------------------------


def test_cache_reset_fires_and_tokens_stay_the_same(gpt2):
    texts = list(corpus.documents(200_000, seed=6))
    batches = [texts[i:i + 10] for i in range(0, len(texts), 10)]
    steady = Encoder(gpt2, eos=EOS)
    guarded = Encoder(gpt2, eos=EOS, cache_reset_chars=20_000)
    for batch in batches:
        a, al = steady.encode(batch)
        b, bl = guarded.encode(batch)
        assert a.tolist() == b.tolist() and al.tolist() == bl.tolist()
    assert steady.cache_resets == 0
    assert guarded.cache_resets >= 5


def test_cache_reset_rebuilds_models_without_a_cache():
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus.documents(50_000, seed=2), trainers.WordLevelTrainer(
        vocab_size=500, special_tokens=["[UNK]", EOS], show_progress=False))
    data = tok.to_str().encode()
    encoder = Encoder(data, eos=EOS, cache_reset_chars=1)
    texts = ["the value of the default", "and the module"]
    first, _ = encoder.encode(texts)
    second, _ = encoder.encode(texts)
    assert encoder.cache_resets == 2 and first.tolist() == second.tolist()


def test_cuts_that_would_change_tokens_are_refused(gpt2):
    # Without spaces, every cut would make the prefix-space pre-tokenizer add a space
    # to the next segment: no cut is safe, so none is made. GPT-2 has no prefix space.
    text = "word\nother\n" * 2000
    prefix_space = TOKENIZERS["bytelevel-prefix-space"]()
    assert Encoder(prefix_space, eos=EOS, max_segment_chars=SEGMENT).segments(text) == [text]
    _assert_exact(prefix_space, [text], min_segments=1)
    assert len(Encoder(gpt2, eos=EOS, max_segment_chars=SEGMENT).segments(text)) > 10
    _assert_exact(gpt2, [text])
