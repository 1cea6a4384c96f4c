"""Issue 32, simultaneous starts: of many processes that claim one run folder at the same moment,
exactly one gets it, round after round, with or without a dead run's lock left in the folder."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mae_lesson.errors import RunError
from mae_lesson.runfolder import acquire_lock, read_lock, release_lock

CLAIMERS, ROUNDS = 6, 100


def claim(folders: list[str], start, done, wins) -> None:
    """For each round: wait for the others, claim, hold until every claimer has tried, then let go."""
    for round_, folder in enumerate(folders):
        start.wait()
        try:
            lock = acquire_lock(Path(folder))
        except RunError:
            lock = None
        else:
            wins.put(round_)
        done.wait()
        release_lock(lock)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="the claimers are forked")
@pytest.mark.parametrize("left_over", ["none", "dead run's lock", "empty lock"])
def test_simultaneous_claims_give_the_folder_to_exactly_one(left_over, tmp_path):
    ctx = mp.get_context("fork")
    start, done, wins = ctx.Barrier(CLAIMERS), ctx.Barrier(CLAIMERS), ctx.Queue()
    folders, gone = [], dead_pid()
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        if left_over == "dead run's lock":
            (folder / ".lock").write_text(json.dumps({"pid": gone, "host": socket.gethostname(), "started": "then"}))
        elif left_over == "empty lock":
            (folder / ".lock").write_text("")  # a run killed between creating its lock and writing it
        folders.append(str(folder))
    procs = [ctx.Process(target=claim, args=(folders, start, done, wins)) for _ in range(CLAIMERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    won = [0] * ROUNDS
    while not wins.empty():
        won[wins.get()] += 1
    assert won == [1] * ROUNDS, [(r, n) for r, n in enumerate(won) if n != 1]  # (round, holders) of bad rounds
    assert not any((Path(f) / ".lock").exists() for f in folders)  # every winner released it


def test_a_held_lock_names_its_holder_and_a_second_claim_in_the_same_process_takes_it_over(tmp_path):
    first = acquire_lock(tmp_path)
    holder = read_lock(tmp_path)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    second = acquire_lock(tmp_path)  # a notebook cell that sets up the same run again
    release_lock(first)  # the earlier hold's clean-up leaves the later hold in place
    assert read_lock(tmp_path)["token"] == second.token
    release_lock(second)
    assert read_lock(tmp_path) is None
