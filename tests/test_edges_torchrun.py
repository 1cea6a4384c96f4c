"""Issue 32: a SIGTERM under torchrun during the last epoch's end-of-epoch work ends with the stop message,
not a gloo traceback at the final meeting of the processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY_FLAGS, needs_fmnist, run_env


def worker_pids(parent: int) -> dict[int, int]:
    """``{RANK: pid}`` of torchrun's worker processes (its children that carry a RANK)."""
    found = {}
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
                           if "=" in item)
            if "RANK" in environ:
                found[int(environ["RANK"])] = int(pid)
    return found


@needs_fmnist
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc")
def test_sigterm_at_the_last_epochs_end_under_torchrun_stops_cleanly(tmp_path):
    out = tmp_path / "run"
    # One epoch of 4 steps on two processes.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "mae_lesson.pretrain", "--train-images", "256", "--batch-size", "64", "--epochs", "1", "--warmup-epochs",
           "0.5", "--out", str(out), "--log-every-steps", "1", "--no-progress", "--num-figure-images", "32",
           *TINY_FLAGS]
    proc = subprocess.Popen(cmd, env=run_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # Rank 0 has tested and drawn the epoch (a metrics row, the checkpoint, the curve and model.pt are
        # left to it); rank 1 finished its part of the epoch's end at once and waits for it.
        figure, deadline = out / "recon_epoch001.png", time.time() + 240
        while proc.poll() is None and time.time() < deadline and not figure.exists():
            time.sleep(0.002)
        assert not (out / "model.pt").exists(), "the run ended before the signal: too fast to test"
        os.kill(worker_pids(proc.pid)[1], signal.SIGTERM)  # as a scheduler stopping the job's processes
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "stopped by SIGTERM after the last step (4 of 4): the run is complete" in stderr, stderr[-3000:]
    assert "gloo" not in stderr and "[rank0]: Traceback" not in stderr and "[rank1]: Traceback" not in stderr
    assert (out / "model.pt").is_file() and not (out / ".lock").exists()
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "epoch"] == [4]


@pytest.mark.parametrize("outcome, code", [(None, 0), (SystemExit(2), 2), (SystemExit(None), 0),
                                           (SystemExit("no such folder"), 1)])
def test_a_torchrun_worker_leaves_with_its_runs_exit_code(monkeypatch, capsys, outcome, code):
    """Under torchrun, main ends the process with os._exit and the status the run asked for."""
    from mae_lesson.run import pretrain_cli

    def run(argv):
        if outcome is not None:
            raise outcome

    left = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(pretrain_cli, "_main", run)
    monkeypatch.setattr(pretrain_cli.os, "_exit", left.append)
    pretrain_cli.main([])
    assert left == [code]
    assert ("no such folder" in capsys.readouterr().err) == (code == 1)
