"""A dataset made with another tokenizer than the model's is refused, naming both values."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError, TokenizerError, TokenizerMismatchError
from pipelines.training.dataset import SequenceDataset
from pipelines.training.tokenizer import TokenizerSpec
from tests.training.helpers import SEQ_LEN


def test_the_models_tokenizer_is_accepted(dataset_a, tok_path):
    spec = TokenizerSpec.from_file(str(tok_path), eos="<|endoftext|>")
    manifest = dataset_a.manifest["tokenizer"]
    assert spec == TokenizerSpec(manifest["sha256"], manifest["vocab_size"], manifest["eos_id"])
    SequenceDataset(dataset_a.uri, SEQ_LEN, tokenizer=spec)
    SequenceDataset(dataset_a.uri, SEQ_LEN, tokenizer={"vocab_size": manifest["vocab_size"]})


def test_another_tokenizer_is_refused_naming_both_values(dataset_a, dataset_wide):
    manifest = dataset_a.manifest["tokenizer"]
    other = dataset_wide.manifest["tokenizer"]
    assert other["sha256"] != manifest["sha256"]
    cases = [
        ({"sha256": other["sha256"]}, "sha256", other["sha256"], manifest["sha256"]),
        ({"vocab_size": 50257}, "vocab_size", 50257, manifest["vocab_size"]),
        (TokenizerSpec(eos_id=manifest["eos_id"] + 1), "eos_id", manifest["eos_id"] + 1,
         manifest["eos_id"]),
    ]
    for spec, field, expected, found in cases:
        with pytest.raises(TokenizerMismatchError) as info:
            SequenceDataset(dataset_a.uri, SEQ_LEN, tokenizer=spec)
        err = info.value
        message = str(err)
        assert (err.field, err.expected, err.found) == (field, expected, found)
        assert repr(expected) in message and repr(found) in message and dataset_a.uri in message
        assert err.exit_code == 2


def test_a_spec_with_unknown_keys_is_refused(dataset_a, tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'vocab'"):
        SequenceDataset(dataset_a.uri, SEQ_LEN, tokenizer={"vocab": 512})
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match="not a tokenizers JSON file"):
        TokenizerSpec.from_file(str(path))
    with pytest.raises(TokenizerError, match="does not exist"):
        TokenizerSpec.from_file(str(tmp_path / "absent.json"))
