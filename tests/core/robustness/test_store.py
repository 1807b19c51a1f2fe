"""The audit's kept scores: they round-trip exactly, only the same images, cases and
checkpoints reuse them, and a file of other images or cases is refused by name."""

from __future__ import annotations

import json
import math

import pytest

from fdseg_core.errors import InputError
from fdseg_core.robustness import LEVELS, Perturbation, PerturbationSuite, ScoreStore
from fdseg_core.robustness.store import ModelKey, file_digest

P = Perturbation("gamma", 1.5, 3)


def _store(tmp_path, suite=None, models=None, cases=None) -> ScoreStore:
    models = {"a": "digest-a", "b": "digest-b"} if models is None else models
    return ScoreStore(
        tmp_path / "robustness.scores.json",
        suite or PerturbationSuite(kinds=("gamma",)),
        {k: ModelKey(v) if isinstance(v, str) else v for k, v in models.items()},
        {"c1": "case-1"} if cases is None else cases,
    )


def test_scores_round_trip_exactly_with_undefined_dice(tmp_path):
    store = _store(tmp_path)
    dice = {"anterior": 0.1 + 0.2, "posterior": float("nan")}
    store.put("a", "c1", P, dice)
    store.save(force=True)
    again = _store(tmp_path)
    got = again.get("a", "c1", P)
    assert got is not None and got["anterior"] == 0.1 + 0.2 and math.isnan(got["posterior"])
    assert again.get("b", "c1", P) is None and again.missing(["a", "b"], "c1", P) == ["b"]
    assert again.count == 1


def test_a_save_waits_for_the_interval_unless_forced(tmp_path):
    store = _store(tmp_path)
    store.put("a", "c1", P, {"x": 0.5})
    store.save()  # within SAVE_EVERY_S of the start: nothing written yet
    assert not store.path.exists()
    store.save(force=True)
    assert json.loads(store.path.read_text())["models"]["a"]["scores"]["c1"] == {
        "gamma@1.5": {"x": 0.5}
    }


def test_a_changed_checkpoint_is_scored_again_and_others_are_kept(tmp_path):
    store = _store(tmp_path)
    store.put("a", "c1", P, {"x": 0.5})
    store.put("b", "c1", P, {"x": 0.7})
    store.save(force=True)
    again = _store(tmp_path, models={"a": "retrained", "b": "digest-b"})
    assert again.get("a", "c1", P) is None and again.get("b", "c1", P) == {"x": 0.7}
    # a model absent from this audit keeps its scores in the file for a later one
    third = _store(tmp_path, models={"b": "digest-b"})
    third.put("b", "c1", Perturbation("clean", 0.0, 0), {"x": 0.9})
    third.save(force=True)
    assert "a" in json.loads(store.path.read_text())["models"]


def test_a_network_in_memory_is_never_stored(tmp_path):
    store = _store(tmp_path, models={"net": None})
    store.put("net", "c1", P, {"x": 0.5})
    store.save(force=True)
    assert store.made == 1 and not store.path.exists() and store.get("net", "c1", P) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"suite": PerturbationSuite(kinds=("gamma",), seed=7)}, "holds scores of other perturbed"),
        ({"cases": {"c1": "other-files"}}, "under the case id 'c1'"),
    ],
)
def test_scores_of_other_images_or_cases_are_refused_by_name(tmp_path, change, message):
    store = _store(tmp_path)
    store.put("a", "c1", P, {"x": 0.5})
    store.save(force=True)
    with pytest.raises(InputError, match=message) as info:
        _store(tmp_path, **change)
    assert str(store.path) in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_not_an_audits_scores_is_refused(tmp_path):
    (tmp_path / "robustness.scores.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="cannot be read as an audit's scores"):
        _store(tmp_path)


def test_other_kinds_and_levels_share_the_stored_images():
    full = PerturbationSuite(kinds=("gamma", "noise"))
    strongest = PerturbationSuite(kinds=("noise",), levels=(3,))
    assert full.images_key() == strongest.images_key()
    assert set(strongest.perturbations()) <= set(full.perturbations())
    assert [p.level for p in strongest.perturbations()] == [0, 3]
    assert "levels" not in full.to_dict() and strongest.to_dict()["levels"] == [3]
    assert LEVELS == (1, 2, 3)


@pytest.mark.parametrize("levels", [(), (0,), (4,)])
def test_a_level_outside_one_to_three_is_refused(levels):
    with pytest.raises(InputError, match="perturbation levels must be some of"):
        PerturbationSuite(levels=levels)


def test_the_digest_follows_the_contents_and_their_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert file_digest([a, b]) != file_digest([b, a])
    before = file_digest([a])
    a.write_bytes(b"One")
    assert file_digest([a]) != before


def test_a_run_whose_checkpoint_is_gone_keeps_the_scores_of_the_same_result(tmp_path):
    store = _store(tmp_path, models={"r": ModelKey("ckpt", run="result-1"), "s": ModelKey("c2")})
    store.put("r", "c1", P, {"x": 0.75})
    store.put("s", "c1", P, {"x": 0.5})
    store.save(force=True)
    gone = {"r": ModelKey(None, run="result-1"), "s": ModelKey(None, run="result-2")}
    again = _store(tmp_path, models=gone)
    assert again.get("r", "c1", P) == {"x": 0.75}
    # stored without a run digest, or under another result.json: nothing to take
    assert again.get("s", "c1", P) is None and again.missing(["r", "s"], "c1", P) == ["s"]
    retrained = _store(tmp_path, models={"r": ModelKey(None, run="result-2")})
    assert retrained.get("r", "c1", P) is None
    again.put("r", "c1", Perturbation("gamma", 2.0, 3), {"x": 0.1})  # nothing to store it by
    again.save(force=True)
    assert again.count == 2
