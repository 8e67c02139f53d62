"""``tokenyard sample`` prints decoded samples, as the reader delivers them."""

from __future__ import annotations

import shutil

from tokenizers import Tokenizer

from pipelines.training.dataset import Order, SequenceDataset
from tests.test_cli import tokenyard


def test_sample_prints_the_decoded_windows(dataset_a, tok_path, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(dataset_a.root, copy)
    decode = Tokenizer.from_file(str(tok_path)).decode
    proc = tokenyard("sample", str(copy), "--seq-len", "40", "--count", "3", "--seed", "4",
                     "--tokenizer", str(tok_path))
    assert proc.returncode == 0, proc.stderr
    ds = SequenceDataset(str(copy), 40, seed=4)
    out = proc.stdout
    assert f"{ds.samples_per_epoch:,} samples of 40 + 1 tokens" in out
    for position in range(3):
        loc = ds.locate(position)
        assert f"window {loc.window} of {copy}" in out
        assert decode(ds.sample_at(position).tolist(), skip_special_tokens=False) in out
    assert out.count("── sample") == 3

    # the tokenizer the manifest names, found next to the dataset, without --tokenizer
    shutil.copy(tok_path, copy / "tokenizer.json")
    plain = tokenyard("sample", str(copy), "--seq-len", "40", "--count", "2", "--no-shuffle",
                      "--ids")
    assert plain.returncode == 0, plain.stderr
    first = SequenceDataset(str(copy), 40, order=Order(shuffle=False)).sample_at(0)
    assert decode(first.tolist(), skip_special_tokens=False) in plain.stdout
    assert "ids: " + " ".join(map(str, first.tolist())) in plain.stdout


def test_sample_explains_a_missing_or_wrong_tokenizer(dataset_a, tmp_path):
    proc = tokenyard("sample", dataset_a.uri, "--seq-len", "40")
    assert proc.returncode == 2
    assert "tokenized with tokenizer.json" in proc.stderr and "--tokenizer PATH" in proc.stderr
    assert "Traceback" not in proc.stderr
    wrong = tmp_path / "other.json"
    from pipelines.testing.corpus import wide_tokenizer_json

    wrong.write_bytes(wide_tokenizer_json())
    proc = tokenyard("sample", dataset_a.uri, "--seq-len", "40", "--tokenizer", str(wrong))
    assert proc.returncode == 2 and "decoding with another tokenizer" in proc.stderr
    proc = tokenyard("sample", str(tmp_path / "nothing"), "--seq-len", "40")
    assert proc.returncode == 2 and "neither a manifest.json" in proc.stderr
