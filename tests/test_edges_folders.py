"""Issue 32, run-folder rules for every command that writes: a fresh run removes only the temporary files
its own saves leave, and the fine-tuning command's table and probe refuse a folder holding earlier results."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mae_lesson import results
from mae_lesson.run import finetune_cli
from mae_lesson.runfolder import claim_folder, release_lock

from test_robustness import one_error_line  # noqa: E402


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_fresh_run_removes_only_its_own_interrupted_saves(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    mine = [".notes.tmp", ".checkpoint.pt.tmp", ".model.pt.draft.tmp", ".results.json.abcd1234.tmp"]
    for name in mine:
        (out / name).write_text("the user's")
    (out / ".checkpoint.pt.k2j3_xab.tmp").write_bytes(b"\0" * 64)  # atomic_save's name, a save killed midway
    lock, _, _ = claim_folder(out, resume=False, overwrite=False)
    release_lock(lock)
    assert sorted(p.name for p in out.iterdir()) == sorted(mine)
    assert ".checkpoint.pt.k2j3_xab.tmp" in capsys.readouterr().err


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.setattr(results, "load_dataset", lambda *a, **k: pytest.fail("data loaded before --out was checked"))


@pytest.mark.parametrize("mode, earlier", [("table", "results.md"), ("probe", "probe.json")])
def test_table_and_probe_refuse_a_folder_with_earlier_results(mode, earlier, tiny_model, tmp_path, capsys, no_data):
    tiny_model.save_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "eval"
    out.mkdir()
    (out / earlier).write_text("| the table of a 2-hour run |")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(SystemExit) as exit_:
        finetune_cli.main(["--mode", mode, "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out)])
    assert exit_.value.code == 2
    message = one_error_line(capsys.readouterr().err)
    assert earlier in message and "--overwrite" in message and str(out) in message, message
    assert snapshot(out) == before


@pytest.mark.parametrize("mode, earlier", [("table", "results.md"), ("probe", "probe.json")])
def test_overwrite_deletes_only_that_modes_results(mode, earlier, tiny_model, tmp_path, monkeypatch):
    tiny_model.save_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "eval"
    out.mkdir()
    (out / earlier).write_text("old")
    (out / "notes.txt").write_text("mine")

    class Loaded(Exception):
        pass

    def load(*args, **kwargs):
        assert not (out / earlier).exists()  # the old results are gone before new ones are measured
        raise Loaded

    monkeypatch.setattr(results, "load_dataset", load)
    with pytest.raises(Loaded):
        finetune_cli.main(["--mode", mode, "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out), "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # its lock released, the user's file kept
