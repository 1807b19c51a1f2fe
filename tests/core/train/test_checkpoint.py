"""Checkpoints: a truncated or foreign file ends in one short line naming it."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.train import load_checkpoint


def test_a_truncated_checkpoint_gets_a_short_reason(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"config": {}, "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    reason = "it is truncated or corrupted (not a complete zip archive)"
    assert message == f"checkpoint {path} could not be read: {reason}"
    # beside a best.pt, the message says what is left
    torch.save({"config": {}, "model": {}}, tmp_path / "best.pt")
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"checkpoint {path} could not be read: {reason}; {tmp_path / 'best.pt'} is the run's "
        "best checkpoint (to predict with it, or to start a new run from the same options)"
    )


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="could not be read: it is not a PyTorch checkpoint"):
        load_checkpoint(path)
    good = tmp_path / "other.pt"
    torch.save({"weights": 1}, good)
    with pytest.raises(ValueError, match="is not an fdseg checkpoint"):
        load_checkpoint(good)
