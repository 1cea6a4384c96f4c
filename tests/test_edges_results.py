"""Issue 32: the run-folder rules for the commands that write results (the ablation sweep, the benchmarks).

A used output location is refused in one line naming the flag, unless told; a file the command did not
write is never removed.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from experiments.ablations import main as ablations_main

from mae_lesson.data import DEBIAN_FASHION_MNIST

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
BENCHMARKS = [  # script, its arguments for a toy run, the files it writes
    ("train_step.py", ["--quick", "--threads", "1"], ("results_cpu.md", "results_cpu.json")),
    ("cpu_kernels.py", ["--quick"], ("cpu_kernels.md", "cpu_kernels.json")),
    ("gpu_train_step.py", ["--dry-run"], ("results_gpu.md", "results_gpu.json")),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, toy, names", BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_a_benchmark_refuses_a_folder_that_holds_its_results(tmp_path, script, toy, names):
    (tmp_path / names[1]).write_text('{"earlier": "results"}')
    (tmp_path / "notes.md").write_text("mine")
    cmd = [sys.executable, "-m", f"benchmarks.{Path(script).stem}", *toy, "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=ENV, timeout=600, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and names[1] in lines[0] and "--overwrite" in lines[0], done.stderr
    assert (tmp_path / names[1]).read_text() == '{"earlier": "results"}'  # refused before anything was measured
    assert not (tmp_path / names[0]).exists() and (tmp_path / "notes.md").read_text() == "mine"
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), reason="no Fashion-MNIST")
def test_the_ablation_sweep_resumes_its_csv_but_refuses_other_settings(tmp_path, capsys):
    tiny = ["--out", str(tmp_path), "--batch-size", "32", "--train-images", "256", "--test-images", "100",
            "--probe-images", "128", "--finetune-steps", "1", "--seeds", "0", "--epochs", "0.125",
            "--only", "target", "--values", "pixels"]  # 0.125 x 8 batches: one step
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".mine.tmp").write_text("mine")
    ablations_main(tiny)
    csv_path = tmp_path / "ablations_p7.csv"
    before = csv_path.read_text()
    assert len(list(csv.DictReader(open(csv_path)))) == 1
    capsys.readouterr()
    # The same sweep resumes (nothing to do); another test set into the same CSV is refused in one line.
    ablations_main(tiny + ["--plan-only"])
    assert "0 run(s) to evaluate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        ablations_main(tiny + ["--test-images", "50"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test_images 100 there, 50 now" in err[0] and "--overwrite" in err[0], err
    assert csv_path.read_text() == before
    assert json.loads((tmp_path / "ablations_p7.settings.json").read_text())["test_images"] == 100
    # While another process holds the folder, a second sweep is refused.
    holds = "from mae_lesson.runfolder import acquire_lock; import sys, time; acquire_lock(sys.argv[1]); print(1, flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", holds, str(tmp_path)], stdout=subprocess.PIPE, cwd=ROOT, env=ENV)
    try:
        assert holder.stdout.readline().strip() == b"1"
        with pytest.raises(SystemExit) as stop:
            ablations_main(tiny + ["--plan-only"])
        assert stop.value.code == 2 and "in use by process" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # --overwrite starts the rows over with the new settings (the finished run is not retrained here:
    # its test set changed, not its pretraining) and removes nothing else.
    ablations_main(tiny + ["--test-images", "50", "--overwrite"])
    assert "1 run(s) to evaluate, 0 to pretrain" in capsys.readouterr().out
    assert json.loads((tmp_path / "ablations_p7.settings.json").read_text())["test_images"] == 50
    assert len(list(csv.DictReader(open(csv_path)))) == 1
    assert (tmp_path / "notes.txt").read_text() == (tmp_path / ".mine.tmp").read_text() == "mine"
    assert not (tmp_path / ".lock").exists()
