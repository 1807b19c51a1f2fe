"""The perturbation audit's cost on real MRI, against scoring the clean cases alone.

``fdseg robustness`` makes every perturbed image of a case once and scores every model
on it. This suite measures, on 4 MSD hippocampus cases (``../shared/data``) with the
default network (``paper_unet3d``, fusion ``none``, untrained: the cost does not depend
on the weights) on 48 x 48 x 32 windows:

* the peer, measured in the same run: scoring the clean cases as ``fdseg predict`` +
  ``fdseg evaluate`` do (``evaluate_volumes`` on each case's grid), per case and model;
* the audit with the whole suite (34 images per case) for 1 and for 2 models, per
  scored image, and its ratio to the peer (1.0: the audit costs no more per image than
  scoring clean cases);
* the time to make each kind's three perturbed images of a case.

Run: ``pytest benchmarks/test_robustness_cpu.py -s`` (prints the table).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

CASES = 4
PATCH = (48, 48, 32)


def _root() -> Path:
    root = Path(__file__).resolve().parents[2] / "shared/data/msd-hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"the MSD hippocampus cases are not at {root}")
    return root


def _models(n: int):
    from fdseg_core import FrequencyDisentangledNet
    from fdseg_core.data import load_dataset
    from fdseg_core.infer.card import ModelCard
    from fdseg_core.robustness import AuditModel

    info = load_dataset(_root())
    card = ModelCard(
        in_channels=1,
        num_classes=3,
        labels=dict(info.labels),
        normalization=("zscore",),
        patch_size=PATCH,
        activation="sigmoid",
        window_batch=2,
    )
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        net = FrequencyDisentangledNet("paper_unet3d", 1, 3, fusion="none").eval()
        models.append(AuditModel(f"model{seed}", network=net, card=card))
    return models, [c for c in info.training][:CASES], dict(info.labels)


def test_audit_cost_per_scored_image_against_clean_scoring(tmp_path):
    pytest.importorskip("torchio", reason="the artifact kinds are the robustness extra")
    from fdseg_core.robustness import PerturbationSuite, audit
    from fdseg_core.train.evaluation import evaluate_volumes

    models, cases, labels = _models(2)
    card = models[0].card
    prep = card.preprocessor()
    with torch.no_grad():
        evaluate_volumes(
            models[0].network,
            [prep(cases[0])],
            num_classes=3,
            patch_size=PATCH,
            overlap=0.5,
            device=torch.device("cpu"),
            activation="sigmoid",
            batch_size=2,
        )  # fmt: skip  (warm-up)
        t = time.perf_counter()
        for case in cases:
            evaluate_volumes(models[0].network, [prep(case)], num_classes=3,
                             patch_size=PATCH, overlap=0.5, device=torch.device("cpu"),
                             activation="sigmoid", batch_size=2, case_grid=True)  # fmt: skip
        clean = (time.perf_counter() - t) / len(cases)
    suite = PerturbationSuite()
    lines = [f"peer: clean scoring, {clean:.3f} s per case and model"]
    for n in (1, 2):
        out = tmp_path / f"rob{n}"
        audit(models[:n], cases, suite, out, labels=labels, progress=False)
        seconds = json.loads((out / "robustness.json").read_text())["seconds"]
        images = len(cases) * len(suite.perturbations())
        per_image = seconds["score"] / (images * n)
        lines.append(
            f"audit, {n} model(s): {seconds['total']:.1f} s for {images} images "
            f"({seconds['perturb']:.1f} s making them, {seconds['score']:.1f} s scoring): "
            f"{per_image:.3f} s per scored image, {per_image / clean:.2f}x the peer; "
            f"{(seconds['perturb'] + seconds['load']) / images:.3f} s per image made"
        )
        assert per_image > 0
    from fdseg_core.data import load_case
    from fdseg_core.robustness import perturb

    loaded = load_case(cases[0])
    for kind in suite.kinds:
        t = time.perf_counter()
        for p in suite.perturbations():
            if p.kind == kind:
                perturb(loaded.image, loaded.affine, p, suite, loaded.case_id)
        lines.append(f"  make {kind}: {(time.perf_counter() - t) / 3:.3f} s per image")
    print("\n" + "\n".join(lines))
