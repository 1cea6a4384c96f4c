"""scripts/python_env.sh: which Python the set-up, main job and test command use.

The set-up must never install into a system Python (Debian's, Ubuntu's and Homebrew's refuse it:
PEP 668). These tests run the shell functions with the environment a user would have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def env_dir(tmp_path: Path, **env: str) -> str:
    """What ``course_env_dir`` prints, run from a copy-free shell in ``tmp_path``."""
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    out = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/python_env.sh && course_env_dir"],
                         cwd=tmp_path, env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_no_active_environment_means_the_course_venv(tmp_path: Path) -> None:
    assert env_dir(tmp_path) == str(tmp_path.resolve() / ".venv")


def test_an_active_virtual_environment_is_used_as_it_is(tmp_path: Path) -> None:
    venv = Path(sys.prefix)  # the environment running these tests has bin/python
    assert env_dir(tmp_path, VIRTUAL_ENV=str(venv)) == str(venv)


def test_an_active_conda_environment_is_used(tmp_path: Path) -> None:
    conda = tmp_path / "conda"
    (conda / "bin").mkdir(parents=True)
    (conda / "bin" / "python").symlink_to(sys.executable)
    assert env_dir(tmp_path, CONDA_PREFIX=str(conda)) == str(conda)


def test_a_stale_virtual_env_variable_without_python_falls_back_to_the_course_venv(tmp_path: Path) -> None:
    assert env_dir(tmp_path, VIRTUAL_ENV=str(tmp_path / "gone")) == str(tmp_path.resolve() / ".venv")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system Python at /usr/bin/python3")
def test_make_course_env_builds_a_venv_from_the_system_python_and_leaves_it_untouched(tmp_path: Path) -> None:
    system = "/usr/bin/python3"
    before = subprocess.run([system, "-c", "import sys; print(sys.path)"], capture_output=True, text=True).stdout
    target = tmp_path / "env"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MAE_LESSON_VENV": str(target)}
    out = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/python_env.sh && make_course_env && course_python"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    if out.returncode != 0 and "python3-venv" in out.stderr + out.stdout and os.geteuid() != 0:
        pytest.skip("python3-venv is missing and this user cannot install it")
    assert out.returncode == 0, out.stderr
    python = out.stdout.strip().splitlines()[-1]
    assert python == str(target / "bin" / "python")
    prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == "True"  # a real virtual environment, not the system interpreter
    after = subprocess.run([system, "-c", "import sys; print(sys.path)"], capture_output=True, text=True).stdout
    assert before == after
    # a second call finds the environment and creates nothing
    again = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/python_env.sh && make_course_env"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert "Creating" not in again.stdout
