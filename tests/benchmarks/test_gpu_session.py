"""The prepared GPU session runs its flow on the CPU: every CUDA step skips cleanly, in
order, and the script ends without an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["e2e-train", "e2e-predict", "e2e-export", "e2e-experiment", "tests", "designs"]
STEPS += ["bench", "steps", "steps-graph"]


def test_the_gpu_session_skips_every_cuda_step_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "results"), "PYTHON": sys.executable}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_session.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (tmp_path / "results" / "session.log").read_text()
    skipped = [line.split(":")[0][3:] for line in log.splitlines() if "skipped (no CUDA" in line]
    assert skipped == STEPS
    assert "== done" in log and "Traceback" not in log
    assert (tmp_path / "results" / "logs").is_dir()
