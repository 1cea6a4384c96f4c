"""Nothing lost, nothing cryptic: run folders, resume checks, Ctrl-C, full and read-only disks, bad values,
hostile checkpoints and image folders, through both command lines."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_lesson import MAE
from mae_lesson import pretrain as engine
from mae_lesson import results
from mae_lesson.run import finetune_cli
from mae_lesson.checkpoint import atomic_save, safe_load
from mae_lesson.errors import EXIT_SIGINT, EXIT_SIGTERM, RunError, describe
from mae_lesson.pretrain import NonFiniteLossError, PretrainArgs, model_config, pretrain
from mae_lesson.pretrained import load_pretrained
from mae_lesson.runfolder import truncate_metrics

from conftest import TINY_RUN, cli, needs_fmnist, run_env, tiny_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=run_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's name and content hash: what 'left intact' is checked against."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def fake_run(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text('{"kind": "epoch", "step": 8, "epoch": 1}\n')
    (folder / "checkpoint.pt").write_bytes(b"41 minutes of training")
    (folder / "args.json").write_text("{}")
    return snapshot(folder)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[0].startswith("error: ") and len(lines) <= 2, stderr
    return "\n".join(lines)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small tmpfs at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------------------ run folders
def test_a_fresh_run_into_a_folder_that_holds_a_run_is_refused(tmp_path):
    out = tmp_path / "run"
    before = fake_run(out)
    with pytest.raises(RunError) as err:
        pretrain(tiny_args(out))
    assert "--resume" in str(err.value) and "--overwrite" in str(err.value) and str(out) in str(err.value)
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holds = "from mae_lesson.runfolder import acquire_lock; import sys, time; acquire_lock(sys.argv[1]); print(1, flush=True); time.sleep(60)"
    sleeper = subprocess.Popen([sys.executable, "-c", holds, str(out)], env=run_env(), cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert sleeper.stdout.readline().strip() == b"1"  # it holds the lock now
        with pytest.raises(RunError, match=f"in use by process {sleeper.pid}"):
            pretrain(tiny_args(out))
        assert json.loads((out / ".lock").read_text())["pid"] == sleeper.pid  # not taken from a live run
        assert snapshot(out).keys() == {".lock"}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        tiny_args(tmp_path, resume=True, overwrite=True)


@pytest.mark.slow
@needs_fmnist
def test_a_stale_lock_is_taken_over_and_leftover_temp_files_removed(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "then"}))
    (out / ".checkpoint.pt.k2j3_xab.tmp").write_bytes(b"\0" * 4096)  # a save killed midway
    pretrain(tiny_args(out, epochs=1, max_steps=2))
    assert (out / "model.pt").is_file()
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
    err = capsys.readouterr().err
    assert "taking over the lock" in err and ".checkpoint.pt.k2j3_xab.tmp" in err


@pytest.mark.slow
@needs_fmnist
def test_overwrite_starts_over_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    fake_run(out)
    (out / "notes.txt").write_text("mine")
    pretrain(tiny_args(out, epochs=1, max_steps=2, overwrite=True))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and all(r["step"] <= 2 for r in rows)
    assert (out / "notes.txt").read_text() == "mine"
    assert safe_load(out / "checkpoint.pt")["step"] == 2


@pytest.mark.slow
@needs_fmnist
def test_a_run_set_up_without_pretrain_frees_its_folder_when_collected(tmp_path, capsys):
    args = tiny_args(tmp_path / "run", overwrite=True, train_images=128, num_figure_images=2)
    first = engine.setup_run(args)
    second = engine.setup_run(args)  # a notebook cell run twice in one kernel: no note about a stale lock
    assert "taking over" not in capsys.readouterr().err
    del first
    gc.collect()
    assert (tmp_path / "run" / ".lock").exists()  # the second set-up's hold survives the first's clean-up
    del second
    gc.collect()
    assert not (tmp_path / "run" / ".lock").exists()


# ------------------------------------------------------------------------------ resume checks
def fake_checkpoint(out: Path, args: PretrainArgs, step: int = 3) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_save({"args": dataclasses.asdict(args), "config": model_config(args).to_dict(), "step": step},
                out / "checkpoint.pt")


def test_resume_with_another_model_or_batch_is_refused_with_a_diff(tmp_path):
    out = tmp_path / "run"
    fake_checkpoint(out, tiny_args(out))
    before = snapshot(out)
    changed = tiny_args(out, resume=True, batch_size=32, accum_iter=2, schedule_steps=50,
                        overrides={**TINY_RUN, "mask_ratio": 0.5})
    with pytest.raises(RunError) as err:
        pretrain(changed)
    message = str(err.value)
    for line in ("config mask_ratio: 0.75 in the run, 0.5 now", "batch_size: 64 in the run, 32 now",
                 "accum_iter: 1 in the run, 2 now", "schedule_steps: None in the run, 50 now"):
        assert line in message, message
    with pytest.raises(RunError, match="config embed_dim: 32 in the run, 128 now"):
        pretrain(dataclasses.replace(changed, overrides={}, batch_size=64, accum_iter=1, schedule_steps=None))
    assert snapshot(out) == before


@pytest.mark.slow
@needs_fmnist
def test_resume_accepts_and_records_a_new_step_cap_and_intervals(tmp_path, capsys):
    out = tmp_path / "run"
    pretrain(tiny_args(out, max_steps=8))
    pretrain(tiny_args(out, resume=True, log_every_steps=4, progress=False))
    record = json.loads((out / "args.json").read_text())
    assert record["max_steps"] is None and record["resumed"] == [
        {"step": 8, "changed": {"max_steps": [8, None], "log_every_steps": [2, 4]}}]
    assert "max_steps 8 -> None" in capsys.readouterr().err
    assert safe_load(out / "model.pt")["step"] == 16


@pytest.mark.slow
@needs_fmnist
def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path, capsys):
    out = tmp_path / "run"
    pretrain(tiny_args(out, epochs=1, max_steps=1, resume=True))
    assert f"nothing to resume in {out}" in capsys.readouterr().err
    assert safe_load(out / "model.pt")["step"] == 1


def test_a_damaged_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    good = ['{"kind": "train", "step": 2, "loss": 1.0}', '{"kind": "train", "step": 4, "loss": 0.9}',
            '{"kind": "train", "step": 6, "loss": 0.8}']
    path.write_text("\n".join(good) + '\n{"kind": "train", "step": 8, "lo')
    truncate_metrics(path, 4)
    assert path.read_text().splitlines() == good[:2]
    assert str(path) in capsys.readouterr().err
    path.write_text(good[0] + "\nnot json\n" + good[1] + "\n")
    with pytest.raises(RunError, match=f"{path} line 2"):
        truncate_metrics(path, 4)


# ------------------------------------------------------------------------------ Ctrl-C and SIGTERM
def start_and_signal(out: Path, sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, *cli(out)], env=run_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def epoch_rows(out: Path) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]


@needs_fmnist
@pytest.mark.slow
def test_ctrl_c_saves_prints_the_resume_command_and_resumes_bit_identical(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    subprocess.run([sys.executable, *cli(straight)], check=True, env=run_env(), cwd=ROOT, timeout=300)
    done = start_and_signal(stopped, signal.SIGINT)
    assert done.returncode == EXIT_SIGINT, done.stderr
    assert "Traceback" not in done.stderr and not (stopped / "model.pt").exists()
    command = done.stderr.split("Continue with:\n", 1)[1].strip().splitlines()[0]
    step = safe_load(stopped / "checkpoint.pt")["step"]
    assert f"at step {step} of 16" in done.stderr and 3 <= step < 16
    assert not (stopped / ".lock").exists()
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "mae_lesson.pretrain"] and argv[-1] == "--resume"
    subprocess.run([sys.executable, *argv[1:]], check=True, env=run_env(), cwd=ROOT, timeout=300)
    a, b = safe_load(straight / "model.pt")["model"], safe_load(stopped / "model.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The epoch that was interrupted reports the mean over all its steps, as the uninterrupted run.
    assert [r["train_loss"] for r in epoch_rows(stopped)] == [r["train_loss"] for r in epoch_rows(straight)]


@needs_fmnist
@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    out = tmp_path / "run"
    done = start_and_signal(out, signal.SIGTERM)
    assert done.returncode == EXIT_SIGTERM, done.stderr
    assert "Traceback" not in done.stderr and "--resume" in done.stderr
    step = safe_load(out / "checkpoint.pt")["step"]
    assert f"at step {step}" in done.stderr


# ------------------------------------------------------------------------------ one error path
@pytest.mark.parametrize("argv, phrase", [
    (["--set", "norm_pix_loss=nope"], "norm_pix_loss must be true or false, got 'nope'"),
    (["--set", "norm_pix_loss='no'"], "norm_pix_loss must be true or false, got 'no'"),
    (["--set", "mlp_ratio=abc"], "mlp_ratio must be a number, got 'abc'"),
    (["--set", "img_size=[1,2"], "--set img_size=[1,2"),
    (["--set", "mask_ratio"], "KEY=VALUE"),
    (["--set", "mask_ratio=0.99"], "keeps int(16 x 0.01) = 0 of the 16 patches"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--accum-iter", "0"], "--accum-iter must be at least 1, got 0"),
    (["--ckpt-every-steps", "0"], "--ckpt-every-steps must be at least 1, got 0"),
    (["--out", ""], "--out is empty"),
    (["--config", "no_such_config"], "no bundled config named 'no_such_config'"),
])
def test_bad_values_are_one_line_and_exit_code_2(argv, phrase, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        engine.main(argv)
    assert exit_.value.code == 2
    message = one_error_line(capsys.readouterr().err)
    assert phrase in message, message
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the run folder


@pytest.mark.slow
@pytest.mark.parametrize("place", ["file", "under_a_file"])
def test_out_on_or_under_a_file_is_named(place, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if place == "file" else blocker / "run"
    done = run_cli(*cli(out))
    assert done.returncode == 2
    message = one_error_line(done.stderr)
    assert str(out) in message and ("is a file" in message or "which is a file" in message), message
    assert blocker.read_text() == "keep me"


@pytest.mark.slow
def test_out_on_a_read_only_disk_is_named(tmp_path):
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as mount:
        done = run_cli(*cli(mount / "run"))
    assert done.returncode == 2
    message = one_error_line(done.stderr)
    assert "read-only" in message and str(mount / "run") in message, message


@needs_fmnist
@pytest.mark.slow
def test_a_full_disk_is_named_and_leaves_earlier_files_intact(tmp_path):
    with tmpfs(tmp_path / "small", "200k") as mount:
        done = run_cli(*cli(mount / "run"))
        files = sorted(p.name for p in (mount / "run").iterdir())
        args_ok = json.loads((mount / "run" / "args.json").read_text())["batch_size"] == 64
    assert done.returncode == 2, done.stderr
    message = one_error_line(done.stderr)
    assert "disk full" in message, message
    assert args_ok and not [f for f in files if f.endswith(".tmp") or f == ".lock"], files


def test_torch_short_write_and_enospc_are_called_disk_full():
    short = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4352 vs 4240")
    assert describe(short).startswith("disk full")
    assert describe(OSError(28, "No space left on device", "runs/x/checkpoint.pt")).startswith(
        "disk full writing runs/x/checkpoint.pt")
    assert describe(RuntimeError("a bug")) is None  # a bug keeps its traceback


@needs_fmnist
def test_a_batch_larger_than_the_dataset_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="training set has 32"):
        pretrain(tiny_args(out, train_images=32))
    assert not out.exists()  # the folder it created is removed again


@needs_fmnist
def test_the_nan_message_promises_no_checkpoint_that_does_not_exist(tmp_path, monkeypatch):
    original = MAE.forward_loss
    monkeypatch.setattr(MAE, "forward_loss", lambda self, *a: original(self, *a) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 1") as err:
        pretrain(tiny_args(tmp_path / "run"))
    assert "No checkpoint was saved" in str(err.value) and "intact" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------ the finetune command line
@pytest.mark.parametrize("content", ["missing", "garbage", "unsafe"])
@pytest.mark.parametrize("mode", ["probe", "table", "finetune"])
def test_finetune_with_a_bad_checkpoint_fails_before_loading_data(content, mode, tmp_path, capsys, monkeypatch):
    path = tmp_path / "model.pt"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif content == "unsafe":
        torch.save({"model": {}, "config": {}, "hook": print}, path)  # needs a Python callable to unpickle

    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the checkpoint was checked")

    monkeypatch.setattr(results, "load_dataset", no_data)
    with pytest.raises(SystemExit) as exit_:
        finetune_cli.main(["--mode", mode, "--checkpoint", str(path), "--out", str(tmp_path / "eval")])
    assert exit_.value.code == 2
    message = one_error_line(capsys.readouterr().err)
    assert str(path) in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("place", ["file", "under_a_file"])
def test_finetune_out_on_or_under_a_file_fails_before_loading_data(place, tiny_model, tmp_path, capsys, monkeypatch):
    tiny_model.save_checkpoint(tmp_path / "model.pt")
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if place == "file" else blocker / "eval"
    monkeypatch.setattr(results, "load_dataset", lambda *a, **k: pytest.fail("data loaded before --out was checked"))
    for mode in ("probe", "table"):
        with pytest.raises(SystemExit) as exit_:
            finetune_cli.main(["--mode", mode, "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out)])
        assert exit_.value.code == 2
        assert str(out) in one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "keep me"


@pytest.mark.slow
def test_finetune_command_line_refuses_bad_values_in_one_line(tmp_path):
    done = run_cli("-m", "mae_lesson.finetune", "--batch-size", "0", "--out", str(tmp_path / "eval"))
    assert done.returncode == 2
    assert "--batch-size must be at least 1" in one_error_line(done.stderr)
    assert not (tmp_path / "eval").exists()


def test_every_flag_of_both_command_lines_has_help_with_its_default():
    for parser in (engine.build_parser(), finetune_cli.build_parser()):
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help and len(action.help) > 20 and "default" in action.help, (parser.prog, action.dest)


# ------------------------------------------------------------------------------ hostile checkpoints
def test_a_small_checkpoint_asking_for_a_huge_model_costs_nothing(tmp_path, monkeypatch):
    path = tmp_path / "hostile.pt"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}, "config": {"model_name": "huge", "embed_dim": 1280,
                "encoder_depth": 32, "encoder_num_heads": 16}}, path)
    assert path.stat().st_size < 4096
    devices = []
    original = MAE.__init__

    def recording_init(self, config=None):
        devices.append(torch.empty(0).device.type)  # the default device the model is built on
        if devices[-1] != "meta":
            raise AssertionError("a model was allocated before its checkpoint was checked")
        original(self, config)

    monkeypatch.setattr(MAE, "__init__", recording_init)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="does not match its own config"):
        MAE.from_checkpoint(path)
    assert devices == [] and time.perf_counter() - start < 60  # refused from the shapes, nothing built
    (tmp_path / "mae_hostile.pt").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="does not match its own config"):
        load_pretrained("mae_hostile", data_dir=tmp_path)
    assert devices == []


def test_from_checkpoint_still_builds_a_real_model(tiny_model, tmp_path):
    tiny_model.save_checkpoint(tmp_path / "m.pt")
    again = MAE.from_checkpoint(tmp_path / "m.pt")
    assert all(p.device.type == "cpu" for p in again.parameters())
    assert all(torch.equal(a, b) for a, b in zip(tiny_model.state_dict().values(), again.state_dict().values()))


# ------------------------------------------------------------------------------ image folders
def image_folder(root: Path, bad: bool = True) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    if bad:
        (root / "a" / "notes.png").write_text("not an image")
        good = root / "b" / "0.png"
        (root / "b" / "cut.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    return root


@needs_fmnist
def test_an_image_folder_is_loaded_at_the_configs_size_and_channels(tmp_path):
    folder = image_folder(tmp_path / "imgs", bad=False)
    cfg = {**TINY_RUN, "img_size": 16, "patch_size": 4, "in_chans": 1}
    out = pretrain(tiny_args(tmp_path / "run", dataset=str(folder), overrides=cfg, config="fashion_mnist_tiny",
                             train_images=None, batch_size=16, epochs=1, max_steps=2))
    model = MAE.from_checkpoint(out / "model.pt")
    assert model.config.img_size == 16 and model.config.in_chans == 1 and len(model.config.norm_mean) == 1


def test_unreadable_images_are_skipped_and_named_or_refused(tmp_path):
    from mae_lesson.data import load_dataset

    folder = image_folder(tmp_path / "imgs")
    with pytest.warns(UserWarning, match=r"skipped 2 .*notes\.png.*cut\.png|skipped 2 .*cut\.png.*notes\.png"):
        data = load_dataset(str(folder), img_size=8, in_chans=1)
    assert data.images.shape == (80, 1, 8, 8) and len(data.labels) == 80
    with pytest.raises(RunError, match=r"2 of 82 files .*(notes|cut)\.png"):
        load_dataset(str(folder), img_size=8, in_chans=1, strict_images=True)
