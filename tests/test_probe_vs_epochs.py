"""The probe-against-epochs figure reads probe.json files in epoch order and skips missing runs."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.probe_vs_epochs import draw, load_points, main

ROOT = Path(__file__).resolve().parents[1]


def write_probe(folder: Path, run: str, probe: float, knn: float) -> None:
    (folder / run).mkdir(parents=True)
    scores = {"cls": {"linear_probe": probe, "knn": knn}, "both": {"linear_probe": probe + 0.01, "knn": knn + 0.01}}
    (folder / run / "probe.json").write_text(json.dumps({"scores": scores}))


def test_points_follow_epochs_not_folder_names(tmp_path):
    write_probe(tmp_path, "late", 0.8, 0.82)
    write_probe(tmp_path, "early", 0.7, 0.75)
    points = load_points(tmp_path, {"late": 150, "early": 20, "missing": 50})
    assert points["linear_probe"]["cls"] == [(20, 70.0), (150, 80.0)]
    assert [e for e, _ in points["knn"]["both"]] == [20, 150]
    fig = draw(points, {"linear_probe": 84.4, "knn": 85.7})
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]  # cls, both, raw pixels in each panel


def test_main_writes_the_figure(tmp_path):
    write_probe(tmp_path, "p7_e50", 0.8, 0.82)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": {"raw pixels (784)": {"linear_probe": [0.844], "knn": [0.857]}}}))
    out = main(["--folder", str(tmp_path), "--results", str(results)])
    assert out == tmp_path / "probe_vs_epochs.png" and out.stat().st_size > 0
