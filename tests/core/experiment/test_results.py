"""An experiment's results: the method label has its own key, old results still read,
test evaluation uses the run's own sliding-window overlap, and the template config."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from builders import TINY_NETWORK, make_toy_dataset

from fdseg_core.data import load_dataset
from fdseg_core.experiment import ExperimentConfig, run_experiment
from fdseg_core.experiment import protocol as protocol_module
from fdseg_core.experiment.protocol import relative_to
from fdseg_core.experiment.report import summarise
from fdseg_core.experiment.results import CaseDice, RunResult, RunTimes, load_run
from fdseg_core.train import TrainConfig

TINY = dict(epochs=1, iters_per_epoch=1, patch_size=(16, 16, 8), val_every=1, n_folds=2)
TINY |= dict(progress=False, backbone_options={"base_filters": 4, "levels": 3})
TINY |= TINY_NETWORK


def test_results_keep_the_method_label_apart_from_the_fusion(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=1)
    template = TrainConfig(dataset=str(ds), out=str(tmp_path / "exp"), **TINY)
    config = ExperimentConfig(
        dataset=str(ds),
        out=str(tmp_path / "exp"),
        train_sizes=(1,),
        fusions=("none", "early"),
        layouts=("centered", "reference"),
        seeds=1,
        training=template,
        n_resamples=100,
    )
    report = run_experiment(config, progress=False)
    by_method = {r.method: r for r in report.results}
    assert set(by_method) == {"none", "early-centered", "early-reference"}
    assert by_method["early-reference"].fusion == "early"
    assert by_method["early-reference"].layout == "reference"
    assert {row.method for row in report.table} == set(by_method)
    assert report.trained == 3 and report.missing == ()
    saved = json.loads((tmp_path / "exp" / "experiment.json").read_text())
    assert saved["training"]["epochs"] == 1 and "fusion" not in saved["training"]


def test_a_dataset_reached_through_a_link_is_recorded_by_the_links_path(tmp_path):
    target = tmp_path / "elsewhere" / "worktree-abc" / "data"
    (target / "ds").mkdir(parents=True)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "data").symlink_to(target, target_is_directory=True)
    out = tmp_path / "exp" / "runs"
    # what a committed experiment.json records: the link, not the machine's worktree
    assert relative_to(tmp_path / "exp" / "data" / "ds", out) == "../data/ds"
    assert relative_to(out / "n002-none-s0", out) == "n002-none-s0"
    assert relative_to(tmp_path / "elsewhere", out) == "../../elsewhere"


def test_results_written_before_the_method_key_still_read():
    old = {"train_size": 2, "fusion": "early-reference", "seed": 0, "cases": []}
    read = RunResult.from_dict(old)
    assert (read.method, read.fusion, read.time_s, read.train_cases) == (
        "early-reference",
        "early",
        None,
        None,
    )
    new = {**old, "method": "early-reference", "fusion": "early"}
    assert RunResult.from_dict(new).method == "early-reference"
    rows = [
        RunResult.from_dict({**old, "fusion": f, "cases": [{"case": "a", "dice_x": d}]})
        for f, d in (("none", 0.5), ("early-reference", 0.7))
    ]
    table = summarise(rows, methods=["none", "early-reference"], n_resamples=100)
    assert [r.method for r in table if r.class_name == "x"] == ["none", "early-reference"]


def test_a_result_reads_back_as_it_was_written_with_undefined_dice_as_null(tmp_path):
    result = RunResult(
        train_size=5,
        method="late",
        seed=3,
        cases=(CaseDice("c1", {"a": 0.75, "b": math.nan}), CaseDice("c2", {"a": 0.5, "b": 1.0})),
        fusion="late",
        time_s=RunTimes(train=10.0, validation=2.5, test=1.0),
        train_cases=("t1", "t2"),
        provenance={"fdseg_version": "0.1", "fdseg_commit": None, "fdseg_dirty": False},
    )
    path = result.save(tmp_path)
    written = json.loads(path.read_text())
    # the keys (and their order) every earlier version wrote
    assert list(written) == [
        *("train_size", "method", "fusion", "layout", "seed", "cases", "checkpoint"),
        *("best_epoch", "epochs_run", "stopped_early", "inference_rule", "train_cases"),
        *("val_cases", "steps_per_epoch", "best_step", "stop_step", "step_cap"),
        *("hit_step_cap", "time_s", "run_dir", "fdseg_version", "fdseg_commit"),
        *("fdseg_dirty", "largest_size", "machines", "test_machine"),
    ]
    # not recorded: null, as every unrecorded field
    assert written["machines"] is None and written["test_machine"] is None
    assert written["fdseg_commit"] is None and written["stop_step"] is None
    assert written["cases"][0] == {"case": "c1", "dice_a": 0.75, "dice_b": None}
    assert written["time_s"] == {"train": 10.0, "validation": 2.5, "test": 1.0}
    back, rows = load_run(tmp_path)
    assert rows == []  # no metrics log beside it
    assert back.time_s == result.time_s and back.train_cases == result.train_cases
    assert back.scores("a") == {"c1": 0.75, "c2": 0.5}
    # the per-case mean skips the undefined class: c1 is 0.75, c2 (0.5 + 1.0) / 2
    assert back.scores("mean") == {"c1": 0.75, "c2": 0.75}
    assert math.isnan(back.cases[0].dice["b"])
    assert back.time_s.total == 13.5
    # an earlier writer's NaN token reads as the null does, and a reread writes every key
    nan_token = path.read_text().replace('"dice_b": null', '"dice_b": NaN')
    assert "NaN" in nan_token
    path.write_text(nan_token)
    assert load_run(tmp_path)[0].scores("mean") == back.scores("mean")
    old = RunResult.from_dict({"train_size": 2, "fusion": "none", "seed": 0, "cases": []})
    assert list(old.to_dict()) == list(written) and old.to_dict()["fdseg_commit"] is None
    assert old.machines == ()
    machine = {"cpu": "x", "cpu_capability": "AVX2", "cpu_threads": 1}
    other = {**machine, "cpu_capability": "AVX512"}
    moved = RunResult.from_dict({**written, "machines": [machine, other], "test_machine": other})
    assert moved.machines == (machine, other) and moved.test_machine == other
    assert moved.to_dict()["machines"] == [machine, other]
    assert moved.to_dict()["test_machine"] == other


def test_the_template_is_replaced_per_run_and_a_dict_is_read_as_one():
    template = TrainConfig(dataset="d", out="o", lr=0.01, layout="reference", epochs=3)
    config = ExperimentConfig(dataset="d", out="o", training=template, train_sizes=(2,))
    run = config.run_config(2, "early", 4)
    assert run.lr == 0.01 and run.epochs == 3 and run.layout == "reference"
    assert run.fusion == "early" and run.seed == 4 and run.train_cases == 2
    assert run.out == str(Path("o") / "runs" / "n002-early-s4")
    from_dict = ExperimentConfig(dataset="d", out="o", training={"lr": 0.01})
    assert isinstance(from_dict.training, TrainConfig) and from_dict.training.lr == 0.01
    with pytest.raises(ValueError, match="set by the experiment"):
        ExperimentConfig(dataset="d", out="o", training={"seed": 1})


def test_test_evaluation_uses_the_runs_own_overlap(tmp_path, monkeypatch):
    from fdseg_core.train import train

    ds = make_toy_dataset(tmp_path / "ds", n_cases=4, n_test=1)
    run = tmp_path / "run"
    train(TrainConfig(dataset=str(ds), out=str(run), overlap=0.25, **TINY))
    seen = []
    from fdseg_core.train import evaluation

    real = evaluation.sliding_window_inference

    def spy(*args, **kwargs):
        seen.append(kwargs["overlap"])
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "sliding_window_inference", spy)
    cases = load_dataset(ds).test
    protocol_module.evaluate_run(run / "last.pt", cases, "cpu")
    protocol_module.evaluate_run(run / "last.pt", cases, "cpu", overlap=0.75)
    assert seen == [0.25, 0.75]


def test_no_library_function_looks_like_a_test():
    root = Path(__file__).resolve().parents[3]
    named = []
    for folder in ("fdseg_core", "fdseg_cli", "fdseg_backbones", "kernels"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name.startswith(
                    ("test", "Test")
                ):
                    named.append(f"{path.name}:{node.name}")
    assert named == []
