"""Issue 39, part 4: nnU-Net on the same split as fdseg's final runs at 9 training cases.

    python nnunet_setup.py raw          # nnunet/raw/Dataset039_Hippocampus (links, no copies)
    python nnunet_setup.py splits       # splits_final.json: fold k = seed k's 9 cases
    python nnunet_setup.py progress RUN FOLD   # nnunet/<RUN>/progress.json from the fold
    python nnunet_setup.py score RUN    # nnunet/<RUN>/pred -> nnunet/<RUN>/result.json

The nnU-Net v2 raw dataset holds the final view's 160 training cases in ``imagesTr``
(``hippocampus_XXX_0000.nii.gz``, symbolic links into the shared data) and its 40 test
cases in ``imagesTs``. ``splits_final.json`` gives nnU-Net's fold ``k`` the 9 training
cases that fdseg's final run ``n009-<fusion>-s<k>`` trains on (the same draw, computed by
fdseg's own split functions) and the 10 validation cases of fold 0, so that both
frameworks train, validate and test on the same cases per seed. ``score`` evaluates a
folder of nnU-Net's predictions with fdseg's evaluator and writes a ``result.json`` that
fdseg's report reads beside the fdseg runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fdseg_core.data import fold_cases, plan_folds, select_subset
from fdseg_core.metrics import evaluate_folder

HERE = Path(__file__).resolve().parent
#: nnU-Net's folders and each run's files (FDSEG_NNUNET_OUT: elsewhere, e.g. on a GPU lease)
NNUNET = Path(os.environ.get("FDSEG_NNUNET_OUT", HERE / "nnunet"))
DATASET = "Dataset039_Hippocampus"
#: the MSD hippocampus cases (FDSEG_HIPPOCAMPUS: elsewhere, e.g. carried to a GPU lease)
DATA = Path(
    os.environ.get("FDSEG_HIPPOCAMPUS", HERE.parents[2] / "shared" / "data" / "msd-hippocampus")
)
FOLDS = 16  # run.sh's --folds for the final view: fold 0 validates on 10 cases
SIZE = 9
SEEDS = (0, 1, 2)
LABELS = {"background": 0, "Anterior": 1, "Posterior": 2}


def _split() -> dict:
    return json.loads((HERE / "split.json").read_text())


def final_split() -> tuple[list[str], list[str]]:
    """The final view's training pool and validation cases of fold 0 (the cases of
    ``views/final``, split by fdseg's own fold rule)."""
    ids = _split()["final_train"]
    pool, val, _ = fold_cases(ids, plan_folds(len(ids), FOLDS, 0))
    return pool, val


def seed_cases(seed: int) -> list[str]:
    """The 9 training cases of seed ``seed`` (fdseg experiment's independent draw)."""
    pool, _ = final_split()
    return select_subset(pool, SIZE, seed=seed, draw="independent")


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def write_raw() -> Path:
    split = _split()
    root = Path(os.environ.get("nnUNet_raw", str(NNUNET / "raw"))) / DATASET
    for part, cases in (("Tr", split["final_train"]), ("Ts", split["test"])):
        for case in cases:
            _link(
                DATA / "imagesTr" / f"{case}.nii.gz", root / f"images{part}" / f"{case}_0000.nii.gz"
            )
            _link(DATA / "labelsTr" / f"{case}.nii.gz", root / f"labels{part}" / f"{case}.nii.gz")
    meta = {
        "channel_names": {"0": "MRI"},
        "labels": LABELS,
        "numTraining": len(split["final_train"]),
        "file_ending": ".nii.gz",
        "name": "Hippocampus (MSD Task04), issue 39's final view",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return root


def write_splits() -> Path:
    _, val = final_split()
    splits = [{"train": seed_cases(s), "val": val} for s in SEEDS]
    preprocessed = os.environ.get("nnUNet_preprocessed", str(NNUNET / "preprocessed"))
    path = Path(preprocessed) / DATASET / "splits_final.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1) + "\n")
    return path


def progress(run: str, fold: str) -> Path:
    """What a finished nnU-Net fold records of its schedule: epochs run, the best EMA
    epoch, iterations, and the training time (needs torch: the nnU-Net environment)."""
    import shutil

    import torch

    from fdseg_core.integrations.nnunet import trainer as fd_trainers  # the nnunet extra

    fold_dir = Path(fold)
    ckpt = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    log = ckpt["logging"]
    ema = [float(v) for v in log["ema_fg_dice"]]
    epochs = int(ckpt["current_epoch"])  # nnU-Net saves the epoch to run next
    starts, ends = log["epoch_start_timestamps"], log["epoch_end_timestamps"]
    per_epoch = [b - a for a, b in zip(starts, ends, strict=False)]
    # the plateau trainers' schedule, or nnU-Net's standard 1000 epochs of 250
    cls = getattr(fd_trainers, ckpt["trainer_name"], None)
    its = getattr(cls, "plateau_iterations", 250)
    cap = getattr(cls, "plateau_max_epochs", 1000)
    best = max(range(len(ema)), key=ema.__getitem__) + 1 if ema else 0
    record = {
        "epochs_run": epochs,
        "best_epoch": best,
        "steps_per_epoch": its,
        "best_step": best * its,
        "stop_step": epochs * its,
        "step_cap": cap * its,
        "hit_step_cap": epochs >= cap,
        "best_ema_pseudo_dice": max(ema) if ema else None,
        "time_s": {"train": round(sum(per_epoch), 1), "validation": 0.0, "test": 0.0},
    }
    out = NNUNET / run
    out.mkdir(parents=True, exist_ok=True)
    (out / "progress.json").write_text(json.dumps(record, indent=1) + "\n")
    logs = sorted(fold_dir.glob("training_log_*.txt"))
    if logs:
        shutil.copyfile(logs[-1], out / "training_log.txt")
    return out / "progress.json"


def score(run: str) -> Path:
    """``nnunet/<run>/pred`` scored against the test labels into ``result.json``:
    ``run`` is ``<trainer>-s<seed>``."""
    folder = NNUNET / run
    trainer, seed = run.rsplit("-s", 1)
    method = {
        "nnUNetTrainer_plateau": "nnunet-none",
        "nnUNetTrainerFDEarly_plateau": "nnunet-early",
        "nnUNetTrainerFDLate_plateau": "nnunet-late",
    }[trainer]
    report = evaluate_folder(folder / "pred", NNUNET / "raw" / DATASET / "labelsTs", labels=LABELS)
    cases: dict[str, dict] = {}
    for row in report["cases"]:
        cases.setdefault(row["case"], {"case": row["case"]})[f"dice_{row['class']}"] = row["dice"]
    progress = json.loads((folder / "progress.json").read_text())
    result = {
        "train_size": SIZE,
        "method": method,
        "fusion": method.removeprefix("nnunet-"),
        "seed": int(seed),
        "cases": [cases[c] for c in sorted(cases)],
        "train_cases": seed_cases(int(seed)),
        "val_cases": final_split()[1],
        "checkpoint": "best (nnU-Net's EMA pseudo Dice)",
        "framework": "nnU-Net 2.8.1, 3d_fullres, " + trainer,
        **progress,
    }
    out = folder / "result.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "raw":
        print(write_raw())
    elif what == "splits":
        print(write_splits())
    elif what == "progress":
        print(progress(sys.argv[2], sys.argv[3]))
    elif what == "score":
        print(score(sys.argv[2]))
    else:
        raise SystemExit(f"unknown part {what!r} (raw, splits, progress RUN FOLD, score RUN)")
