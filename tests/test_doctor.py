"""The pre-flight command: each check sees what is missing, and minutes scale with measured speed."""

from __future__ import annotations

import json
import re
import tempfile

import pytest

from mae_lesson import doctor


def test_absent_dataset_is_missing_and_fails_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "fashion_mnist_sources", lambda root: [tmp_path / "nowhere"])
    check = doctor.check_data(tmp_path)
    assert not check.ok and check.needed and "train and test" in check.found
    assert "dataset-fashion-mnist" in check.fix
    assert doctor.main(["--no-measure", "--minutes", str(tmp_path / "absent.json")]) == 1
    assert re.search(r"^MISSING\s+data\s+Fashion-MNIST", capsys.readouterr().out, re.M)


def test_fake_dataset_files_are_found(tmp_path, monkeypatch):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    monkeypatch.setattr(doctor, "fashion_mnist_sources", lambda root: [tmp_path / "empty", folder])
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte"):
        (folder / name).write_bytes(b"")
    check = doctor.check_data(tmp_path)
    assert not check.ok and "test split not found" in check.found  # test labels still missing
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    check = doctor.check_data(tmp_path)
    assert check.ok and str(folder) in check.found


def test_missing_checkpoints_are_named(tmp_path):
    (tmp_path / "mae_fashion_mnist_tiny.pt").write_bytes(b"")
    check = doctor.check_checkpoints(tmp_path)
    assert not check.ok
    assert "mae_fashion_mnist_p7.pt" in check.found and "mae_fashion_mnist_tiny.pt" not in check.found


def test_read_only_folder_is_reported(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.NamedTemporaryFile

    def refuse_locked(*args, **kwargs):  # as the OS does for a folder without write permission (root ignores chmod)
        if kwargs.get("dir") == locked:
            raise PermissionError(13, "Permission denied", str(locked))
        return real(*args, **kwargs)

    monkeypatch.setattr(doctor.tempfile, "NamedTemporaryFile", refuse_locked)
    check = doctor.check_write_access((tmp_path, locked))
    assert not check.ok and check.found == f"cannot write in {locked}"
    assert not list(tmp_path.glob(".doctor-*")), "the probe file was left behind"
    assert doctor.check_write_access((tmp_path,)).ok


def test_minutes_scale_with_the_measured_speed(tmp_path, monkeypatch, capsys):
    table = {"machine": "ref box", "images_per_s_reference": 300.0,
             "notebooks": {"00_welcome": {"quick": 0.2, "full": 0.7}, "07_finetuning": {"quick": 0.5, "full": 11.4}}}
    path = tmp_path / "minutes.json"
    path.write_text(json.dumps(table))
    monkeypatch.setattr(doctor, "measure_images_per_s", lambda seconds: 100.0)  # 3x slower than the reference
    doctor.main(["--minutes", str(path)])
    out = capsys.readouterr().out
    assert "x 3.00" in out and "ref box" in out
    assert [line.split() for line in out.splitlines() if line.strip().startswith("07_finetuning")] == \
        [["07_finetuning", "1.5", "34.2"]]
    assert "all notebooks" in out and "36.3" in out  # 3 x (0.7 + 11.4)
    assert doctor.main(["--minutes", str(path), "--json"]) in (0, 1)
    predicted = json.loads(capsys.readouterr().out)["predicted_minutes"]
    assert predicted["00_welcome"] == pytest.approx({"quick": 0.6, "full": 2.1})


def test_malformed_minutes_file_is_refused(tmp_path, capsys):
    path = tmp_path / "minutes.json"
    path.write_text(json.dumps({"notebooks": {}}))
    with pytest.raises(SystemExit):
        doctor.main(["--no-measure", "--minutes", str(path)])
    assert "images_per_s_reference" in capsys.readouterr().err


@pytest.mark.slow
def test_speed_measurement_runs_training_steps():
    assert doctor.measure_images_per_s(seconds=0.2, device="cpu") > 0
