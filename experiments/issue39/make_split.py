"""The fixed, seeded split of the 200 MSD Hippocampus cases, and the dataset views of it.

    python experiments/issue39/make_split.py     # writes split.json and views/*/dataset.json

The split is drawn once from the sorted case ids with ``numpy.random.default_rng(39)``:

* ``test``: 40 cases held out for the final runs (part 3); no decision sees them before.
* ``dev_test``: 30 of the other 160, the test cases of the development experiments
  (the recipe ablation of part 2 and the pilot that sizes part 3). They join the
  training pool of the final runs, which never score on them.

Two views are MSD-layout ``dataset.json`` files whose paths point into the shared data
(nothing is copied): ``views/dev`` trains on the 130 cases that are neither ``test`` nor
``dev_test`` and tests on ``dev_test``; ``views/final`` trains on the 160 that are not
``test`` and tests on ``test`` (a labelled ``test`` list). With ``--folds 13`` (dev) and
``--folds 16`` (final), fold 0 validates on 10 cases, which never train.

Run it again to check: it rewrites the same bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "shared" / "data" / "msd-hippocampus"
SEED = 39
N_TEST = 40
N_DEV_TEST = 30


def main() -> None:
    raw = json.loads((DATA / "dataset.json").read_text())
    ids = sorted(Path(e["image"]).name.removesuffix(".nii.gz") for e in raw["training"])
    order = np.random.default_rng(SEED).permutation(len(ids))
    test = sorted(ids[i] for i in order[:N_TEST])
    dev_test = sorted(ids[i] for i in order[N_TEST : N_TEST + N_DEV_TEST])
    rest = sorted(set(ids) - set(test))
    dev_train = sorted(set(rest) - set(dev_test))
    split = {
        "dataset": "msd-hippocampus (../shared/data/msd-hippocampus, 200 cases)",
        "seed": SEED,
        "rule": "numpy.random.default_rng(seed).permutation of the sorted case ids: "
        "the first 40 are test, the next 30 dev_test",
        "test": test,
        "dev_test": dev_test,
        "dev_train": dev_train,
        "final_train": rest,
    }
    (HERE / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    for view, train, held in (("dev", dev_train, dev_test), ("final", rest, test)):
        folder = HERE / "views" / view
        folder.mkdir(parents=True, exist_ok=True)
        rel = Path(os.path.relpath(DATA, folder)).as_posix()

        def entry(case: str, rel: str = rel) -> dict[str, str]:
            return {
                "image": f"{rel}/imagesTr/{case}.nii.gz",
                "label": f"{rel}/labelsTr/{case}.nii.gz",
            }

        out = {
            **{k: raw[k] for k in ("name", "reference", "licence", "modality", "labels")},
            "description": f"MSD Task04 Hippocampus, issue 39's {view} view: "
            f"{len(train)} training and {len(held)} labelled test cases (split.json)",
            "tensorImageSize": "3D",
            "numTraining": len(train),
            "numTest": len(held),
            "training": [entry(c) for c in train],
            "test": [entry(c) for c in held],
        }
        (folder / "dataset.json").write_text(json.dumps(out, indent=1) + "\n")
        print(f"{view}: {len(train)} training, {len(held)} test -> {folder / 'dataset.json'}")


if __name__ == "__main__":
    main()
