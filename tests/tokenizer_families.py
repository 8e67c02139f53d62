"""Small tokenizers of each family the fast backend must match, trained on generated text.

One per family: GPT-2 byte-level BPE; Llama-3-style Split(regex) + ByteLevel;
SentencePiece-style BPE with byte fallback (Prepend + Replace normalizer, no
pre-tokenizer); an NFC normalizer; added special tokens with a template post-processor.
And the families fastokens refuses (Metaspace, NFKC, WordPiece, Unigram), which must run
on HF. Each is trained once per process.
"""

from __future__ import annotations

import functools

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

from pipelines.testing import corpus

EOS = "<|endoftext|>"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _texts() -> list[str]:
    return list(corpus.documents(150_000, seed=11))


def _bpe(pre=None, norm=None, *, byte_fallback=False, added=(), template=False,
         vocab=800) -> bytes:
    tok = Tokenizer(models.BPE(unk_token="<unk>" if byte_fallback else None,
                               byte_fallback=byte_fallback))
    if pre is not None:
        tok.pre_tokenizer = pre
    if norm is not None:
        tok.normalizer = norm
    specials = [EOS]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if byte_fallback:
        specials += ["<unk>"] + [f"<0x{i:02X}>" for i in range(256)]
        alphabet = []
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:
        tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_texts(), trainers.BpeTrainer(
        vocab_size=vocab + len(specials), special_tokens=specials, initial_alphabet=alphabet,
        show_progress=False))
    if added:
        tok.add_special_tokens(list(added))
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok.to_str().encode()


def _byte_level():
    return pre_tokenizers.ByteLevel(add_prefix_space=False)


FAST_FAMILIES = {
    "gpt2": lambda: _bpe(_byte_level()),
    "llama3": lambda: _bpe(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])),
    "sentencepiece-byte-fallback": lambda: _bpe(
        None, normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
        byte_fallback=True),
    "nfc": lambda: _bpe(_byte_level(), normalizers.NFC()),
    "added-tokens-template": lambda: _bpe(_byte_level(), added=[
        AddedToken("<s>", special=True), AddedToken("</s>", special=True),
        AddedToken("<|im_start|>", special=True, lstrip=True),
        AddedToken("<tool>", special=True, rstrip=True, single_word=True)], template=True),
}


def _wordpiece() -> bytes:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_texts(), trainers.WordPieceTrainer(
        vocab_size=800, special_tokens=["[UNK]", EOS], show_progress=False))
    return tok.to_str().encode()


def _unigram() -> bytes:
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(_texts(), trainers.UnigramTrainer(
        vocab_size=600, special_tokens=[EOS], unk_token=EOS, show_progress=False))
    return tok.to_str().encode()


REFUSED_FAMILIES = {
    "metaspace": lambda: _bpe(pre_tokenizers.Metaspace()),
    "nfkc": lambda: _bpe(_byte_level(), normalizers.NFKC()),
    "wordpiece": _wordpiece,
    "unigram": _unigram,
}


@functools.cache
def tokenizer_json(family: str) -> bytes:
    """The tokenizer file of a family, as bytes."""
    return {**FAST_FAMILIES, **REFUSED_FAMILIES}[family]()
