"""Dataset layouts: nnU-Net v2 raw and Medical Segmentation Decathlon (MSD), auto-detected."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fdseg_core.data.problems import ERROR, Problem
from fdseg_core.errors import InputError

__all__ = [
    "Case",
    "DatasetInfo",
    "load_dataset",
    "NIFTI_ENDINGS",
    "strip_nifti_ending",
    "group_channel_files",
    "class_names",
    "label_names_near",
    "num_classes",
    "read_label_names",
]

NIFTI_ENDINGS = (".nii.gz", ".nii")


def num_classes(labels: dict[str, int]) -> int:
    """Output classes of a ``labels`` mapping (name -> value), background included."""
    return max(labels.values()) + 1


def class_names(labels: dict[str, int]) -> dict[int, str]:
    """Value -> name of a ``labels`` mapping (name -> value)."""
    return {v: k for k, v in labels.items()}


_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def strip_nifti_ending(name: str) -> str | None:
    """``"case_0000.nii.gz" -> "case_0000"``; ``None`` for a non-NIfTI name."""
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return None


@dataclass(frozen=True)
class Case:
    """One case: its image files (one per channel, in channel order) and optional label."""

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset on disk.

    Attributes:
        root: Dataset folder.
        layout: ``"nnunet"`` or ``"msd"``.
        name: Dataset name from ``dataset.json`` (or the folder name).
        channel_names: Channel names in order (``["QSM"]``, ``["CT"]``, ...).
        labels: Label name -> integer value, ``background`` 0 included.
        file_ending: ``".nii.gz"`` or ``".nii"``.
        training: Cases with labels.
        test: Cases of ``imagesTs`` (with labels when ``labelsTs`` holds them).
        multichannel_4d: MSD stores several channels in one 4D file (channels last).
    """

    root: Path
    layout: str
    name: str
    channel_names: tuple[str, ...]
    labels: dict[str, int]
    file_ending: str
    training: tuple[Case, ...]
    test: tuple[Case, ...] = ()
    multichannel_4d: bool = False
    raw: dict = field(default_factory=dict, repr=False)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a dataset folder needs a dataset.json (nnU-Net v2 or MSD layout)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object")
    return data


def _labels_name_to_int(raw: dict, path: Path, msd: bool) -> dict[str, int]:
    labels = raw.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{path}: 'labels' must be a non-empty object")
    out: dict[str, int] = {}
    try:
        if msd:  # {"0": "background", "1": "tumour"}
            for k, v in labels.items():
                out[str(v)] = int(k)
        else:  # {"background": 0, "tumour": 1}; region lists are not supported
            for k, v in labels.items():
                if isinstance(v, list | tuple):
                    raise InputError(f"{path}: region-based label {k!r} is not supported")
                out[str(k)] = int(v)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: bad 'labels' entry: {exc}") from exc
    if 0 not in out.values():
        raise InputError(f"{path}: 'labels' must declare the background value 0")
    if len(set(out.values())) != len(out):
        raise InputError(f"{path}: 'labels' repeats a value")
    return out


def read_label_names(path: str | Path) -> dict[str, int]:
    """The class names of a ``dataset.json`` (nnU-Net v2 ``{"name": value}`` or MSD
    ``{"value": "name"}``), as ``{name: value}``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not JSON, or no usable ``labels`` (the message names the file).
    """
    path = Path(path)
    raw = _read_json(path)
    labels = raw.get("labels")
    msd = isinstance(labels, dict) and bool(labels) and all(str(k).isdigit() for k in labels)
    return _labels_name_to_int(raw, path, msd=msd)


def label_names_near(*folders: str | Path) -> tuple[dict[str, int] | None, Path | None]:
    """The class names of the dataset a folder sits in (``imagesTs``, ``labelsTs`` and
    the like, beside ``dataset.json``), from the first folder that has one.

    Returns:
        ``(names, dataset_json)``, or ``(None, None)`` when no folder sits in a dataset.
    """
    for folder in folders:
        candidate = Path(folder).resolve().parent / "dataset.json"
        if candidate.is_file():
            try:
                return read_label_names(candidate), candidate
            except ValueError:
                continue
    return None, None


def group_channel_files(folder: Path, file_ending: str | None = None) -> dict[str, list[Path]]:
    """``{case: [channel files in order]}`` for files named ``{case}_{0000}{ending}``.

    The suffix is a 4-digit channel index; files without one are single-channel cases.
    """
    groups: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        stem = strip_nifti_ending(path.name)
        if stem is None or (file_ending and not path.name.endswith(file_ending)):
            continue
        m = _CHANNEL.match(stem)
        case, channel = (m["case"], int(m["channel"])) if m else (stem, 0)
        groups.setdefault(case, {})[channel] = path
    out = {}
    for case, channels in groups.items():
        expected = list(range(len(channels)))
        if sorted(channels) != expected:
            raise InputError(
                f"case {case!r} in {folder}: channel files {sorted(channels)} are "
                f"not numbered 0000..{len(channels) - 1:04d}"
            )
        out[case] = [channels[i] for i in expected]
    return out


#: The keys nnU-Net v2 requires in ``dataset.json`` (``modality`` is the older name of
#: ``channel_names``, which fdseg still reads).
NNUNET_REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


def _report(problems: list[Problem] | None, problem: Problem) -> None:
    """Raise ``problem`` (strict reading), or add it to ``problems`` (``fdseg check``)."""
    if problems is None:
        if problem.missing:
            raise FileNotFoundError(problem.message)
        raise InputError(problem.message)
    problems.append(problem)


def _declared(
    root: Path, raw: dict, channels: dict, problems: list[Problem] | None, *, msd: bool
) -> tuple[str, tuple[str, ...], dict[str, int]]:
    """What the ``dataset.json`` of either layout declares: ``(name, channel names,
    labels)``. The name falls back to the folder's; ``channels`` maps channel indices
    to names; the labels must be consecutive (:func:`_check_consecutive`)."""
    path = root / "dataset.json"
    channel_names = tuple(str(channels[k]) for k in sorted(channels, key=int))
    labels = _labels_name_to_int(raw, path, msd=msd)
    _check_consecutive(labels, path, problems)
    return str(raw.get("name", root.name)), channel_names, labels


def _nnunet(root: Path, raw: dict, problems: list[Problem] | None = None) -> DatasetInfo:
    path = root / "dataset.json"
    missing = [
        k
        for k in NNUNET_REQUIRED_KEYS
        if k not in raw and not (k == "channel_names" and "modality" in raw)
    ]
    if missing:
        raise InputError(
            f"{path}: missing {', '.join(repr(k) for k in missing)}; an nnU-Net v2 dataset.json "
            f"needs {', '.join(NNUNET_REQUIRED_KEYS)}"
        )
    names = raw.get("channel_names", raw.get("modality"))
    if not isinstance(names, dict) or not names:
        raise InputError(f"{path}: 'channel_names' must be a non-empty object")
    ending = raw["file_ending"]
    if ending not in NIFTI_ENDINGS:
        raise InputError(
            f"{path}: file_ending {ending!r} is not supported (NIfTI only: {list(NIFTI_ENDINGS)})"
        )
    name, channel_names, labels = _declared(root, raw, names, problems, msd=False)

    def cases(images: Path, labels_dir: Path, need_labels: bool) -> tuple[Case, ...]:
        if not images.is_dir():
            if need_labels:
                raise FileNotFoundError(f"{images} not found (nnU-Net v2 layout)")
            return ()
        out = []
        for case, files in group_channel_files(images, ending).items():
            if len(files) != len(channel_names):
                _report(
                    problems,
                    Problem(
                        ERROR,
                        "missing_file",
                        f"case {case!r}: {len(files)} image files in {images} but "
                        f"dataset.json declares {len(channel_names)} channels",
                        case,
                        str(images),
                    ),
                )
                continue
            label = labels_dir / f"{case}{ending}"
            if need_labels and not label.is_file():
                _report(
                    problems,
                    Problem(
                        ERROR,
                        "missing_file",
                        f"case {case!r}: label {label} not found",
                        case,
                        str(label),
                        missing=True,
                    ),
                )
                continue
            out.append(Case(case, tuple(files), label if label.is_file() else None))
        if need_labels and labels_dir.is_dir():  # labels without an image
            have = {c.case_id for c in out} | {p.case for p in problems or [] if p.case}
            for path in sorted(labels_dir.glob(f"*{ending}")):
                case = path.name[: -len(ending)]
                if not path.name.startswith(".") and case not in have:
                    _report(
                        problems,
                        Problem(
                            ERROR,
                            "missing_file",
                            f"case {case!r}: label {path} has no image in {images} "
                            f"(expected {images / (case + '_0000' + ending)})",
                            case,
                            str(path),
                            missing=True,
                        ),
                    )
        return tuple(out)

    training = cases(root / "imagesTr", root / "labelsTr", True)
    if not training and not problems:
        raise InputError(f"{root / 'imagesTr'} holds no training case")
    num = raw["numTraining"]
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"{path}: numTraining must be a positive integer, got {num!r}")
    found = len(training) + len({p.case for p in problems or [] if p.kind == "missing_file"})
    if num != found:
        _report(
            problems,
            Problem(
                ERROR,
                "case_count",
                f"{path}: numTraining is {num} but imagesTr holds {found} cases",
                file=str(path),
            ),
        )
    test = cases(root / "imagesTs", root / "labelsTs", False)
    return DatasetInfo(root, "nnunet", name, channel_names, labels, ending, training, test, raw=raw)


def _msd(root: Path, raw: dict, problems: list[Problem] | None = None) -> DatasetInfo:
    path = root / "dataset.json"
    modality = raw.get("modality", {"0": "image"})
    name, channel_names, labels = _declared(root, raw, modality, problems, msd=True)

    def resolve(rel: str) -> Path:
        p = (root / rel).resolve() if not Path(rel).is_absolute() else Path(rel)
        return p

    training = []
    for i, entry in enumerate(raw.get("training", [])):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputError(f"{path}: training entry {i} must have 'image' and 'label'")
        image, label = resolve(entry["image"]), resolve(entry["label"])
        case_id = strip_nifti_ending(image.name) or image.stem
        missing = [f for f in (image, label) if not f.is_file()]
        for f in missing:
            _report(
                problems,
                Problem(
                    ERROR,
                    "missing_file",
                    f"case {case_id!r}: {f} not found (listed in {path})",
                    case_id,
                    str(f),
                    missing=True,
                ),
            )
        if not missing:
            training.append(Case(case_id, (image,), label))
    if not training and not problems:
        raise InputError(f"{path}: the 'training' list is empty")
    test = []
    for entry in raw.get("test", []):
        image = resolve(entry if isinstance(entry, str) else entry["image"])
        if image.is_file():
            label = None
            if isinstance(entry, dict) and "label" in entry and resolve(entry["label"]).is_file():
                label = resolve(entry["label"])
            test.append(Case(strip_nifti_ending(image.name) or image.stem, (image,), label))
    ending = ".nii.gz" if training[0].image_paths[0].name.endswith(".nii.gz") else ".nii"
    return DatasetInfo(
        root,
        "msd",
        name,
        channel_names,
        labels,
        ending,
        tuple(training),
        tuple(test),
        multichannel_4d=len(channel_names) > 1,
        raw=raw,
    )


def _check_consecutive(labels: dict[str, int], path: Path, problems: list[Problem] | None) -> None:
    """Labels must be 0 .. K-1 (nnU-Net's rule): a network has one output per value."""
    values = sorted(labels.values())
    if values == list(range(len(values))):
        return
    moves = " ".join(f"--remap {v}:{i}" for i, v in enumerate(values) if v != i)
    _report(
        problems,
        Problem(
            ERROR,
            "non_consecutive_labels",
            f"{path}: the labels {values} are not consecutive: fdseg (like nnU-Net) needs "
            f"the values 0 to {len(values) - 1}, one network output each; write a copy "
            f"with consecutive labels: fdseg check {path.parent} {moves} --out NEWDIR",
            file=str(path),
        ),
    )


def load_dataset(root: str | Path, *, problems: list[Problem] | None = None) -> DatasetInfo:
    """Read a dataset folder in the nnU-Net v2 raw or the MSD layout.

    The layout is detected from ``dataset.json``: a ``training`` list of image/label
    paths means MSD; ``channel_names`` (with ``imagesTr``/``labelsTr`` files named
    ``{case}_{0000}{file_ending}``) means nnU-Net v2.

    Args:
        root: The dataset folder.
        problems: Collect the problems of the cases (missing or mismatched files, a
            case count, labels that are not consecutive) here instead of raising the
            first (``fdseg check``); a case with a problem is left out. A folder or a
            ``dataset.json`` that cannot be read raises either way.

    Raises:
        FileNotFoundError: Missing folder, ``dataset.json`` or case files (named).
        ValueError: Invalid ``dataset.json`` or inconsistent files (named).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    raw = _read_json(root / "dataset.json")
    if isinstance(raw.get("training"), list):
        return _msd(root, raw, problems)
    if "channel_names" in raw or (root / "imagesTr").is_dir():
        return _nnunet(root, raw, problems)
    raise InputError(
        f"{root / 'dataset.json'}: neither nnU-Net v2 ('channel_names') nor MSD "
        "('training' list) layout"
    )
