"""tools/offline_kit.py: a kit built for a tiny requirement set installs into a fresh environment with --no-index."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools import offline_kit


def tiny_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A pure-Python wheel written by hand (no build tools, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


@pytest.mark.slow
def test_kit_installs_offline_into_a_fresh_environment(tmp_path):
    index = tmp_path / "index"  # stands in for PyPI while the kit is built
    tiny_wheel(index)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg>=1.0\n")
    data_root = tmp_path / "course-data"
    raw = data_root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in offline_kit.FASHION_FILES:
        (raw / f"{name}.gz").write_bytes(name.encode())
    kit = tmp_path / "kit"
    commands = offline_kit.build_kit(kit, requirements, ["--no-index", "--find-links", str(index)], None, data_root,
                                     bundle=False)
    assert all("--no-index --find-links" in c for c in commands)
    assert sorted(p.name for p in (kit / "wheels").iterdir()) == ["tinypkg-1.0-py3-none-any.whl"]
    index.joinpath("tinypkg-1.0-py3-none-any.whl").unlink()  # the install may only use the kit

    dest = tmp_path / "learner" / "mae-lesson"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    result = subprocess.run(["bash", str(kit / "install.sh"), str(dest)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    python = dest / ".venv" / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import tinypkg; print(tinypkg.VERSION)"], capture_output=True, text=True)
    assert check.stdout.strip() == "1.0", check.stderr
    assert sorted(p.name for p in (dest / "data" / "FashionMNIST" / "raw").iterdir()) == \
        sorted(f"{n}.gz" for n in offline_kit.FASHION_FILES)
    assert "bash install.sh" in (kit / "README.txt").read_text()


def test_missing_data_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(offline_kit, "fashion_mnist_sources", lambda root: [root / "FashionMNIST" / "raw"])
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found"):
        offline_kit.copy_data(tmp_path / "out", tmp_path / "empty")


def test_install_command_uses_only_the_kit():
    commands = offline_kit.install_commands("requirements.txt", project=True)
    assert commands == ['"$DEST/.venv/bin/python" -m pip install --no-index --find-links "$KIT/wheels" -r "$KIT/requirements.txt"',
                        '"$DEST/.venv/bin/python" -m pip install --no-index --find-links "$KIT/wheels" -e "$DEST"']
    assert "setuptools>=61" in offline_kit.build_requirements()
