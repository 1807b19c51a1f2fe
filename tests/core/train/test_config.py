"""The configuration: validation from each field's description, runtime fields, the
one precedence rule."""

from __future__ import annotations

import dataclasses

import pytest

from fdseg_core.choices import FUSIONS, LAYOUTS, LOSSES
from fdseg_core.train import RECIPES, RUNTIME_FIELDS, TrainConfig, resolve_fields
from fdseg_core.train.config import option_spec


def make(**kw):
    return TrainConfig(dataset="d", out="o", **kw)


def test_runtime_fields_are_the_six_that_say_how_a_run_executes():
    assert RUNTIME_FIELDS == {
        "device",
        "num_workers",
        "kernel",
        "tensorboard",
        "mlflow",
        "progress",
    }
    c = make(device="cpu", num_workers=3)
    assert "device" not in c.run_dict() and "num_workers" not in c.run_dict()
    assert c.run_dict() == make(progress=False, tensorboard=True).run_dict()
    assert c.run_dict() == make(kernel="fused").run_dict()  # the same numbers up to rounding
    assert c.run_dict() == make(mlflow="local").run_dict()  # where the run is logged
    assert c.run_dict() != make(lr=0.1).run_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"layout": "shifted"},
            r"layout must be one of \['centered', 'reference'\], got 'shifted'",
        ),
        ({"optimizer": "lamb"}, "optimizer must be one of"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"loss": "focal"}, "loss must be one of"),
        ({"backend": "cuda"}, "backend must be one of"),
        ({"kernel": "fastest"}, r"kernel must be one of \['per_axis', 'fused', 'auto'\]"),
        (
            {"kernel": "fused", "backend": "matmul"},
            "kernel='fused' picks a design of the Triton kernels, but backend='matmul' runs none",
        ),
        ({"layout": "reference", "backend": "triton"}, "implements layout='centered' only"),
        ({"recipe": "nnunet"}, r"recipe must be one of \['default', 'nnunet_like', 'paper'\]"),
        ({"beta": 0.0}, r"beta must lie in \(0, 1\), got 0.0"),
        ({"overlap": 1.0}, r"overlap must lie in \[0, 1\), got 1.0"),
        ({"foreground_oversample": 1.5}, r"foreground_oversample must lie in \[0, 1\]"),
        ({"weight_decay": -1e-3}, "weight_decay must be >= 0"),
        ({"grad_clip": -1.0}, "grad_clip must be >= 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"iters_per_epoch": 0}, "iters_per_epoch must be a positive integer or None"),
        ({"early_stop_patience": 0}, "early_stop_patience must be a positive integer or None"),
        ({"early_stop_min_epochs": -1}, "early_stop_min_epochs must be an integer >= 0"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer, got 1.5"),
        ({"lr": float("nan")}, "lr must be positive, got nan"),
    ],
)
def test_every_field_is_checked_from_its_description(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_choices_come_from_the_one_names_module():
    assert option_spec("fusion")["choices"] == FUSIONS
    assert option_spec("layout")["choices"] == LAYOUTS
    assert option_spec("loss")["choices"] == LOSSES
    assert option_spec("recipe")["choices"] == tuple(RECIPES)


def test_every_field_has_a_help_text_and_a_known_default():
    for f in dataclasses.fields(TrainConfig):
        spec = option_spec(f.name)
        assert spec["help"], f.name
        if f.name not in ("dataset", "out"):
            assert spec["default"] == getattr(make(), f.name), f.name
    with pytest.raises(ValueError, match="no field 'lrate'"):
        option_spec("lrate")


def test_precedence_is_user_then_recipe_then_job_default_then_config_default():
    fields, applied = resolve_fields(
        {"lr": 0.5, "epochs": 2},
        recipe="paper",
        defaults={"epochs": 12, "patch_size": (48, 48, 32), "val_every": 4},
    )
    assert fields["lr"] == 0.5 and "lr" not in applied  # the user's option wins
    assert fields["epochs"] == 2
    assert fields["patch_size"] == "full" and applied["patch_size"] == "full"  # recipe > job
    assert fields["val_every"] == 1  # the paper recipe sets it too
    assert fields["recipe"] == "paper"
    plain, applied = resolve_fields({}, defaults={"val_every": 4, "patch_size": (80, 80, 64)})
    # the default recipe sets only its measured sizes, over a job's (or a plan's) defaults
    sizes = {"patch_size": (48, 48, 32), "batch_size": 2}
    assert plain == {"val_every": 4, "recipe": "default", **sizes} and applied == sizes
    config = TrainConfig(dataset="d", out="o", **plain)
    assert config.epochs == option_spec("epochs")["default"]  # the config's own default
