"""``fdseg data msd`` against a real HTTP server on the loopback address, serving
archives the tests build from MSD hippocampus cases: a good one, a truncated one, one
with a wrong checksum, one with a ``../`` member, and a connection cut half way. No test
reaches outside the machine."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
from builders import hippocampus_root
from click.testing import CliRunner

from fdseg_cli.main import cli

pytestmark = pytest.mark.slow
TASK = "Task04_Hippocampus"
CASES = ("033", "160", "243", "003", "004")


def _msd_tar(path: Path, *, evil: bool = False) -> Path:
    """An MSD-layout archive of a few real cases (the release's own file layout)."""
    root = hippocampus_root()
    training = []
    with tarfile.open(path, "w") as tar:
        for case in CASES:
            name = f"hippocampus_{case}.nii.gz"
            tar.add(root / "imagesTr" / name, f"{TASK}/imagesTr/{name}")
            tar.add(root / "labelsTr" / name, f"{TASK}/labelsTr/{name}")
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        meta = json.loads((root / "dataset.json").read_text())
        meta |= {"numTraining": len(CASES), "training": training, "test": []}
        data = json.dumps(meta).encode()
        info = tarfile.TarInfo(f"{TASK}/dataset.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if evil:
            info = tarfile.TarInfo("../escaped.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"oops"))
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test's folder, with HTTP ranges, and cuts the first transfer of a file
    named cut-* half way."""

    cut_once: set[str] = set()

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        ranged = self.headers.get("Range")
        if ranged:
            start = int(ranged.split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if "cut" in str(path.parent.name) and str(path) not in self.cut_once:
            self.cut_once.add(str(path))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops half way
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    good = _msd_tar(site / "good.tar")
    for name in ("good", "cut"):
        (site / name).mkdir()
        (site / name / f"{TASK}.tar").write_bytes(good.read_bytes())
    (site / "truncated").mkdir()
    (site / "truncated" / f"{TASK}.tar").write_bytes(good.read_bytes()[:-20000])
    (site / "evil").mkdir()
    _msd_tar(site / "evil" / f"{TASK}.tar", evil=True)

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(site), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", site
    httpd.shutdown()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _get(url, out, md5):
    args = ["data", "msd", TASK, "--out", str(out), "--mirror", url, "--no-progress"]
    return CliRunner().invoke(cli, [*args, *(["--md5", md5] if md5 else [])])


def test_a_good_archive_becomes_a_dataset_that_trains(server, tmp_path):
    url, site = server
    out = tmp_path / "msd"
    r = _get(f"{url}/good", out, _md5(site / "good" / f"{TASK}.tar"))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [TASK]  # no part, no temp folder
    args = ["train", str(out / TASK), "--out", str(tmp_path / "run"), "--epochs", "1"]
    args += ["--iters-per-epoch", "2", "--folds", "2", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    r = _get(f"{url}/good", out, None)  # already there: nothing downloaded
    assert r.exit_code == 0 and "already there" in r.output


def test_the_official_checksum_refuses_a_mirror_that_is_not_the_release(server, tmp_path):
    url, _ = server
    out = tmp_path / "msd"
    r = _get(f"{url}/good", out, None)
    assert r.exit_code == 2, r.output
    line = r.output.strip().splitlines()[-1]
    assert "not the published 9d24dba78a72977dbd1d2e110310f31b: it was deleted" in line
    assert list(out.iterdir()) == []


def test_a_download_cut_half_way_resumes_where_it_stopped(server, tmp_path):
    url, site = server
    out = tmp_path / "msd"
    md5 = _md5(site / "cut" / f"{TASK}.tar")
    r = _get(f"{url}/cut", out, md5)
    assert r.exit_code == 2, r.output
    assert "run the command again to resume" in r.output.strip().splitlines()[-1]
    part = out / f".{TASK}.tar.part"
    assert 0 < part.stat().st_size < (site / "cut" / f"{TASK}.tar").stat().st_size
    r = _get(f"{url}/cut", out, md5)
    assert r.exit_code == 0, r.output
    assert "resuming Task04_Hippocampus.tar at" in r.output
    assert (out / TASK / "dataset.json").is_file() and not part.exists()


@pytest.mark.parametrize(
    ("where", "expected"),
    [("truncated", "not a complete tar archive"), ("evil", "would be written outside")],
)
def test_a_bad_archive_ends_in_one_line_and_leaves_nothing(server, tmp_path, where, expected):
    url, site = server
    out = tmp_path / "msd"
    r = _get(f"{url}/{where}", out, _md5(site / where / f"{TASK}.tar"))
    assert r.exit_code == 2, r.output
    assert expected in r.output.strip().splitlines()[-1]
    assert list(out.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_an_offline_machine_ends_in_one_line(tmp_path):
    # a port nothing listens on, on the loopback address
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _get(f"http://127.0.0.1:{port}", tmp_path / "msd", None)
    assert r.exit_code == 2, r.output
    assert "this machine seems to be offline" in r.output.strip().splitlines()[-1]
    r = CliRunner().invoke(cli, ["data", "msd", "Task99", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown MSD task 'Task99'" in r.output
