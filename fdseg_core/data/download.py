"""The Medical Segmentation Decathlon's tasks, downloaded, checked and unpacked.

``fdseg data msd Task04_Hippocampus --out DIR`` fetches the task's archive (resuming a
download cut short), checks its published MD5, unpacks it without writing outside
``DIR`` and leaves ``DIR/Task04_Hippocampus``, an MSD dataset that ``fdseg plan``,
``train`` and ``experiment`` read as it is. Nothing half-written is left behind: the
archive grows as ``DIR/.Task04_Hippocampus.tar.part`` until its checksum matches, and is
unpacked into a temporary folder that is renamed into place once complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fdseg_core.errors import DiskFullError, InputError

__all__ = ["MSD_SOURCE", "MSD_TASKS", "MSDTask", "download_msd"]


@dataclass(frozen=True)
class MSDTask:
    """One task of the Decathlon: its archive and the archive's MD5."""

    name: str
    url: str
    md5: str


#: Where the table comes from: the MSD release (Simpson et al., arXiv:1902.09063;
#: Antonelli et al., Nat. Commun. 13:4128, 2022; medicaldecathlon.com, CC-BY-SA 4.0) as
#: mirrored by the MONAI project, with the checksums of MONAI 1.x
#: (``monai.apps.DecathlonDataset.resource`` and ``.md5``).
MSD_SOURCE = "https://msd-for-monai.s3-us-west-2.amazonaws.com/"

#: The published MD5 of each task's archive.
_MD5 = {
    "Task01_BrainTumour": "240a19d752f0d9e9101544901065d872",
    "Task02_Heart": "06ee59366e1e5124267b774dbd654057",
    "Task03_Liver": "a90ec6c4aa7f6a3d087205e23d4e6397",
    "Task04_Hippocampus": "9d24dba78a72977dbd1d2e110310f31b",
    "Task05_Prostate": "35138f08b1efaef89d7424d2bcc928db",
    "Task06_Lung": "8afd997733c7fc0432f71255ba4e52dc",
    "Task07_Pancreas": "4f7080cfca169fa8066d17ce6eb061e4",
    "Task08_HepaticVessel": "641d79e80ec66453921d997fbf12a29c",
    "Task09_Spleen": "410d4a301da4e5b2f6f86ec3ddba524e",
    "Task10_Colon": "bad7a188931dc2f6acf72b08eb6202d0",
}
#: The ten tasks, by name.
MSD_TASKS: dict[str, MSDTask] = {
    name: MSDTask(name, f"{MSD_SOURCE}{name}.tar", md5) for name, md5 in _MD5.items()
}

_CHUNK = 1 << 20


def _task(name: str) -> MSDTask:
    found = MSD_TASKS.get(name) or next(
        (t for t in MSD_TASKS.values() if t.name.lower().startswith(name.lower())), None
    )
    if found is None:
        raise InputError(f"unknown MSD task {name!r}: expected one of {', '.join(MSD_TASKS)}")
    return found


def download_msd(
    name: str,
    out: str | Path,
    *,
    mirror: str | None = None,
    md5: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Download, check and unpack one task of the Decathlon into ``out``.

    Args:
        name: The task (``"Task04_Hippocampus"``; a unique prefix such as ``"Task04"``).
        out: The folder the task's folder goes into.
        mirror: A folder URL that holds ``<task>.tar`` (a lab's copy); the official
            checksum is checked all the same.
        md5: Another checksum, for an archive that is not the official one.
        progress: A progress bar over the bytes.
        timeout: Seconds a connection may stay silent.
        say: Where one-line notes go (a resumed download, a task already there).

    Returns:
        ``out/<task>``, the dataset.

    Raises:
        InputError: Unknown task; the server unreachable (offline); an archive whose
            checksum does not match (it is deleted); a truncated archive; a member that
            would be written outside ``out``.
        DiskFullError: The disk filled up (the partial download is kept to resume).
    """
    from tqdm import tqdm  # lazy: only while downloading

    task = _task(name)
    out = Path(out)
    target = out / task.name
    if (target / "dataset.json").is_file():
        if say:
            say(f"{target} is already there (its dataset.json exists): nothing to download")
        return target
    url = (mirror.rstrip("/") + "/" + task.name + ".tar") if mirror else task.url
    expected = (md5 or task.md5).lower()
    out.mkdir(parents=True, exist_ok=True)
    part = out / f".{task.name}.tar.part"
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part holds the whole file already
            response = None
        else:
            raise InputError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(
            f"cannot reach {url} ({reason}): this machine seems to be offline; download the "
            f"archive elsewhere and give its folder with --mirror file://..., or a lab copy"
        ) from exc
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if have and not resumed:  # the server sends the whole file: start again
                have = 0
            if resumed and say:
                say(f"resuming {task.name}.tar at {have / 2**20:.1f} MiB")
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            bar = tqdm(
                total=total, initial=have, unit="B", unit_scale=True, disable=not progress,
                desc=task.name,
            )  # fmt: skip
            try:
                with open(part, "ab" if resumed else "wb") as fh:
                    while chunk := response.read(_CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
            except OSError as exc:
                if exc.errno in (28, 122):  # ENOSPC, EDQUOT
                    raise DiskFullError(
                        exc.errno,
                        f"could not write {part}: no space left on the device (the part "
                        "downloaded so far is kept: run the command again to resume)",
                    ) from exc
                raise InputError(
                    f"the download of {url} stopped ({exc}); run the command again to resume"
                ) from exc
            finally:
                bar.close()
            if total is not None and part.stat().st_size < total:
                raise InputError(
                    f"the download of {url} ended early ({part.stat().st_size} of {total} "
                    "bytes); run the command again to resume"
                )
    digest = _md5(part)
    if digest != expected:
        part.unlink()
        raise InputError(
            f"{url}: the archive's MD5 is {digest}, not the published {expected}: it was "
            "deleted (a damaged download, or another file); run the command again"
        )
    try:
        _unpack(part, out, task.name)
    finally:
        part.unlink(missing_ok=True)  # checked and unpacked, or useless
    if not (target / "dataset.json").is_file():
        raise InputError(f"{url}: the archive holds no {task.name}/dataset.json")
    return target


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, out: Path, name: str) -> None:
    """Unpack into a temporary folder inside ``out``, refusing any member that would be
    written outside it (an absolute path, ``..``, a link or a device), then move the
    task's folder into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    path = PurePosixPath(member.name)
                    if path.is_absolute() or ".." in path.parts:
                        raise InputError(
                            f"{archive.name}: the member {member.name!r} would be written "
                            f"outside {out}; nothing was unpacked"
                        )
                    if not (member.isfile() or member.isdir()):
                        raise InputError(
                            f"{archive.name}: the member {member.name!r} is a link or a device; "
                            "nothing was unpacked"
                        )
                for member in members:
                    tar.extract(member, tmp, set_attrs=False)
        except (tarfile.TarError, EOFError) as exc:
            raise InputError(f"{archive.name}: not a complete tar archive ({exc})") from exc
        except OSError as exc:
            if exc.errno in (28, 122):
                raise DiskFullError(
                    exc.errno, f"could not unpack {archive.name} into {out}: no space left"
                ) from exc
            raise
        source = tmp / name
        if not source.is_dir():
            raise InputError(f"{archive.name}: the archive holds no folder {name}/")
        os.replace(source, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
