"""The ablation scripts: settings, the verdict rule on hand-made numbers, reports, and a tiny sweep end to end."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from experiments import ablation_report as report
from experiments.ablation_report import AGREES, DISAGREES, UNRESOLVED, Stat, verdict
from experiments.ablation_runs import eval_cost, finished, pretrain_args, pretrain_cost, pretrain_setting
from experiments.ablations import SHIPPED_CHECKPOINT, SWEEPS, EncoderWithMaskTokens, main, run_name, tick_label

from mae_lesson import MAE
from mae_lesson.config import Config
from mae_lesson.data import DEBIAN_FASHION_MNIST
from mae_lesson.runfolder import claim_folder, release_lock

TINY = {"img_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}


def rows_of(setting: dict[tuple[str, str], list[float]], measure: str = "linear_probe") -> list[dict]:
    """CSV-like rows (strings) with one value per seed for ``measure``; other measures constant."""
    rows = []
    for (ablation, value), values in setting.items():
        for seed, v in enumerate(values):
            row = {"ablation": ablation, "value": value, "seed": str(seed), "epoch_seconds": "50.0",
                   **{m: "0.5" for m in report.MEASURES}}
            rows.append({**row, measure: str(v)})
    return rows


# ------------------------------------------------------------------------------ the models and settings
def test_encoder_with_mask_tokens_sees_every_patch():
    torch.manual_seed(0)
    model = EncoderWithMaskTokens(TINY)
    imgs = torch.randn(2, 1, 28, 28)
    out = model(imgs)
    assert out["latent"].shape == (2, 1 + 49, 32)  # all patches, not the 12 visible ones
    assert out["pred"].shape == (2, 49, 16) and int(out["mask"].sum()) == 2 * (49 - 12)
    baseline = MAE(TINY)
    assert baseline(imgs)["latent"].shape == (2, 1 + 12, 32)
    # A removed patch's pixels cannot reach the encoder: changing them leaves the latent unchanged.
    noise = torch.rand(2, 49)
    mask = model(imgs, noise=noise)["mask"]
    hidden = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, 16))
    changed = imgs + 5 * hidden
    torch.testing.assert_close(model(imgs, noise=noise)["latent"], model(changed, noise=noise)["latent"])


@pytest.mark.parametrize("ablation, value, overrides, options", SWEEPS["p7"].settings, ids=lambda x: str(x))
def test_every_p7_setting_trains_at_28x28(ablation, value, overrides, options):
    """Each setting of the p7 sweep builds and takes a loss on 28x28 images (grid masking: a 4x4 grid)."""
    cfg = Config.from_file("fashion_mnist_p7").replace(**overrides)
    torch.manual_seed(0)
    model = (EncoderWithMaskTokens if options.get("encoder_mask_tokens") else MAE)(cfg)
    out = model(torch.randn(2, 1, 28, 28))
    assert torch.isfinite(out["loss"]) and int(out["mask"].sum()) == 2 * (16 - int(16 * (1 - cfg.mask_ratio)))


def test_the_p4_preset_reproduces_the_committed_sweep():
    """Every row of ablations.csv is a p4 setting, and its run name is the CSV's (same overrides, same run)."""
    rows = report.read_rows(ROOT / "experiments" / "ablations.csv")
    settings = {(a, v): (o, opt) for a, v, o, opt in SWEEPS["p4"].settings}
    assert len(rows) == 26 and all((r["ablation"], r["value"]) in settings for r in rows)
    for row in rows:
        overrides, options = settings[(row["ablation"], row["value"])]
        assert run_name(SWEEPS["p4"].config, overrides, options) == row["overrides"], row


def test_every_claim_names_settings_of_the_p7_sweep():
    values = {(a, v) for a, v, _, _ in SWEEPS["p7"].settings}
    for claim in report.CLAIMS_P7:
        assert (claim.ablation, claim.a) in values and (claim.ablation, claim.b) in values, claim
        assert claim.measure in report.MEASURES and claim.sign in (-1, 0, 1)


def test_random_init_and_shipped_checkpoint(tmp_path):
    """steps 0 is an untrained model (seeded); a checkpoint option loads data/'s model with its run's timing."""
    args = argparse.Namespace(train=[None] * 64, batch_size=8, out=str(tmp_path))
    sweep = SWEEPS["p4"]
    model, timing = pretrain_setting(args, sweep, {}, {}, 3, 0, tmp_path / "x0")
    torch.manual_seed(3)
    fresh = MAE(model.config)
    assert timing == {"steps": 0, "epochs": 0.0, "pretrain_seconds": 0.0, "epoch_seconds": 0.0}
    assert not any(tmp_path.iterdir())
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    model, timing = pretrain_setting(args, sweep, {}, {"checkpoint": SHIPPED_CHECKPOINT}, 0, 250, tmp_path / "s")
    from mae_lesson import load_pretrained

    shipped = load_pretrained("mae_fashion_mnist_tiny")
    assert model.config == shipped.config and model.pos_embed.dtype == torch.float32
    log = [json.loads(line) for line in (ROOT / "data" / "mae_fashion_mnist_tiny_run" / "metrics.jsonl").open()]
    epoch_rows = [m for m in log if m["kind"] == "epoch"]
    assert timing["epochs"] == len(epoch_rows) and timing["steps"] == epoch_rows[-1]["step"]
    assert timing["epoch_seconds"] == min(m["seconds"] for m in epoch_rows)
    assert tick_label({"ablation": "schedule", "value": "shipped", "epochs": "20.00"}) == "shipped\n20.0 ep"


def test_a_finished_run_is_reused_only_with_the_same_arguments(tmp_path):
    args = argparse.Namespace(train=[None] * 512, batch_size=64, blr=1e-3, train_images=512, data_root="data",
                              dataset="fashion_mnist")
    wanted = pretrain_args(args, SWEEPS["p7"], {}, 0, 16, tmp_path)
    assert wanted.warmup_epochs == pytest.approx(2 / 50 * 2) and wanted.schedule_steps == 16
    (tmp_path / "args.json").write_text(json.dumps(wanted.__dict__))
    assert not finished(tmp_path, wanted)  # no model.pt: the run stopped before its end
    (tmp_path / "model.pt").write_bytes(b"")
    assert finished(tmp_path, wanted)
    assert not finished(tmp_path, pretrain_args(args, SWEEPS["p7"], {}, 1, 16, tmp_path))  # another seed
    assert not finished(tmp_path, pretrain_args(args, SWEEPS["p7"], {}, 0, 32, tmp_path))  # another budget


def test_an_unfinished_run_in_a_sweep_folder_starts_over(tmp_path):
    """A run stopped half-way leaves checkpoint.pt and metrics.jsonl; the sweep's next try replaces it."""
    args = argparse.Namespace(train=[None] * 512, batch_size=64, blr=1e-3, train_images=512, data_root="data",
                              dataset="fashion_mnist")
    wanted = pretrain_args(args, SWEEPS["p7"], {}, 0, 16, tmp_path / "seed0")
    (tmp_path / "seed0").mkdir()
    (tmp_path / "seed0" / "checkpoint.pt").write_bytes(b"an interrupted run's last save")
    (tmp_path / "seed0" / "metrics.jsonl").write_text('{"kind": "train", "step": 3}\n')
    lock, created, resume_from = claim_folder(wanted.out, wanted.resume, wanted.overwrite)  # refused without overwrite
    release_lock(lock)
    assert not created and resume_from is None


def test_cost_estimate_scales_with_flops_and_budget():
    args = argparse.Namespace(batch_size=256, train=[None] * 60000, test=[None] * 10000, probe_images=10000,
                              finetune_steps=60)
    sweep = SWEEPS["p7"]
    one_epoch = 234
    default = pretrain_cost(sweep, {}, {}, one_epoch, args)
    assert default == pytest.approx(3 + (2 + 50) * one_epoch * 256 / 60000)  # set-up, one epoch and its end
    assert pretrain_cost(sweep, {}, {}, 4 * one_epoch, args) == pytest.approx(4 * default - 3 * 3)
    assert pretrain_cost(sweep, {}, {"encoder_mask_tokens": True}, one_epoch, args) > 2 * default
    assert pretrain_cost(sweep, {"mask_ratio": 0.9}, {}, one_epoch, args) < default
    assert pretrain_cost(sweep, {}, {}, 0, args) == 0.0
    assert 30 < eval_cost(args) < 90  # about a pretraining epoch of evaluation per run


@pytest.mark.parametrize("argv, message", [
    (["--only", "targt"], "unknown ablation 'targt'; choose from mask_ratio, target"),
    (["--only", "target", "--values", "normpix"], "its values are pixels, norm_pix"),
    (["--only", "budget", "target"], "--only budget runs a study of its own"),
    (["--sweep", "p4", "--only", "decoder_width", "--values", "256"], "its values are 32, 64, 128"),
])
def test_unknown_settings_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------ the verdict rule
def test_mean_and_sample_sd_over_seeds():
    summary = report.aggregate(rows_of({("mask_ratio", "0.75"): [0.60, 0.62, 0.64], ("mask_ratio", "0.1"): [0.5]}))
    probe = summary[0]["linear_probe"]
    assert summary[0]["seeds"] == [0, 1, 2] and probe.n == 3
    assert probe.mean == pytest.approx(0.62) and probe.sd == pytest.approx(0.02)  # ddof=1, not 0.0163
    assert math.isnan(summary[1]["linear_probe"].sd)
    twice = rows_of({("target", "pixels"): [0.6]}) * 2
    with pytest.raises(ValueError, match="seed"):
        report.aggregate(twice)


@pytest.mark.parametrize("a, b, sign, expected", [
    (Stat(0.70, 0.01, 3), Stat(0.65, 0.01, 3), +1, AGREES),
    (Stat(0.70, 0.01, 3), Stat(0.65, 0.01, 3), -1, DISAGREES),
    (Stat(0.60, 0.01, 3), Stat(0.65, 0.01, 3), -1, AGREES),
    (Stat(0.66, 0.02, 3), Stat(0.65, 0.02, 3), +1, UNRESOLVED),
    # se = sqrt(0.01**2 / 2 * 2) = 0.01: a difference just above 2 se resolves, just below does not
    (Stat(0.6201, 0.01, 2), Stat(0.60, 0.01, 2), +1, AGREES),
    (Stat(0.6199, 0.01, 2), Stat(0.60, 0.01, 2), +1, UNRESOLVED),
    (Stat(0.80, math.nan, 1), Stat(0.60, 0.01, 3), +1, UNRESOLVED),  # one seed: no spread to judge by
    # a claim of no difference: the interval inside +-2 points agrees, a resolved gap disagrees
    (Stat(0.650, 0.002, 3), Stat(0.648, 0.002, 3), 0, AGREES),
    (Stat(0.70, 0.01, 3), Stat(0.65, 0.01, 3), 0, DISAGREES),
    (Stat(0.655, 0.0122, 3), Stat(0.650, 0.0122, 3), 0, UNRESOLVED),
])
def test_verdict_rule(a, b, sign, expected):
    word, diff, se = verdict(a, b, sign)
    assert word == expected
    assert diff == pytest.approx(a.mean - b.mean)


def test_verdicts_compare_the_claimed_settings():
    rows = rows_of({("mask_type", "random"): [0.70, 0.71, 0.72], ("mask_type", "block"): [0.60, 0.61, 0.62],
                    ("mask_type", "grid"): [0.75, 0.76, 0.77]})
    judged = report.verdicts(report.aggregate(rows))
    probe = {j["claim"].b: j["verdict"] for j in judged if j["claim"].measure == "linear_probe"}
    assert probe == {"block": AGREES, "grid": DISAGREES}
    finetune = [j["verdict"] for j in judged if j["claim"].measure == "finetune"]
    assert finetune == [UNRESOLVED, UNRESOLVED]  # equal means, zero spread: no difference to resolve
    assert all(j["claim"].ablation == "mask_type" for j in judged)  # claims on settings not run are left out


def test_markdown_report_and_figure(tmp_path):
    rows = []
    for ablation, values in (("mask_ratio", ["0.1", "0.75"]), ("target", ["pixels", "norm_pix"]),
                             ("decoder_depth", ["1", "2", "8"]), ("encoder_mask_tokens", ["no (MAE)", "yes"]),
                             ("mask_type", ["random", "block", "grid"])):
        for i, value in enumerate(values):
            rows += rows_of({(ablation, value): [0.6 + 0.02 * i, 0.61 + 0.02 * i, 0.63 + 0.02 * i]})
    summary = report.aggregate(rows)
    judged = report.verdicts(summary)
    text = report.markdown_report(summary, judged, "test")
    assert "| mask ratio | 0.75 | 0,1,2 | 0.500 ± 0.000 | 63.3 ± 1.5 |" in text
    assert "| decoder depth | linear probe: 8 > 1 | 73.5 vs 65.5 (Table 1a) | +4.0 ± 1.2 | agrees |" in text
    path = report.draw_seeded(summary, tmp_path / "sweep.png", "test")
    assert 20_000 < path.stat().st_size < 150_000  # legible at 150 dpi, small enough to commit


def budget_rows(points: dict[float, tuple[float, float, float]]) -> list[dict]:
    """Budget-probe rows from ``{epochs: (probe, kNN, fine-tune)}`` in percent."""
    return [{"budget": f"{e:g}", "linear_probe": p / 100, "knn": k / 100, "finetune": f / 100}
            for e, (p, k, f) in points.items()]


def test_chosen_budget_is_separated_from_random_init_and_still_rising():
    # The measured p7 curve (experiments/budget_p7.csv): 3 epochs has the probe only 4.2 points up.
    curve = {0: (62.24, 69.49, 64.12), 1: (65.38, 71.43, 62.86), 2: (66.08, 73.47, 65.96),
             3: (66.42, 74.51, 71.99), 4: (68.80, 75.18, 73.28), 5: (70.69, 76.53, 74.61)}
    assert report.choose_budget(budget_rows(curve)) == 4
    assert report.choose_budget(budget_rows(curve), margin=0.04) == 3
    assert report.choose_budget(budget_rows(curve), margin=0.02) == 3  # 2 epochs: fine-tune only 1.8 up
    # Separated only at the last budget: not rising past it, so nothing qualifies.
    assert report.choose_budget(budget_rows({0: (60, 60, 60), 1: (62, 62, 62), 2: (70, 70, 70)})) is None
    # A flattened curve: 2 epochs qualifies only while 3 epochs still beats it on every measure.
    flat = {0: (60, 60, 60), 1: (63, 63, 63), 2: (70, 70, 70), 3: (71, 70, 72)}
    assert report.choose_budget(budget_rows(flat)) is None  # kNN did not rise from 2 to 3
    flat[3] = (71, 71, 72)
    assert report.choose_budget(budget_rows(flat)) == 2
    with pytest.raises(ValueError):
        report.choose_budget(budget_rows({1: (60, 60, 60), 2: (70, 70, 70)}))  # no random-init point


def test_normpix_report_compares_the_two_targets():
    rows = [{"seed": str(s), "target": t, "check": "finetune", "finetune_steps": "60", "finetune_blr": "0.004",
             "value": str(v)} for t, vs in (("pixels", [0.64, 0.66, 0.65]), ("norm_pix", [0.50, 0.52, 0.51]))
            for s, v in enumerate(vs)]
    rows += [{"seed": "0", "target": t, "check": "cls_l2_norm", "finetune_steps": "", "finetune_blr": "",
              "value": v} for t, v in (("pixels", "11.0"), ("norm_pix", "9.5"))]
    text = report.normpix_report(rows)
    assert "| fine-tune 60 steps, blr 0.004 | 65.0 ± 1.0 | 51.0 ± 1.0 | -14.0 ± 0.8 | yes |" in text
    assert "| cls_l2_norm | 11.000 | 9.500 | -1.500 | n/a (one seed) |" in text


# ------------------------------------------------------------------------------ end to end, tiny
@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), reason="no Fashion-MNIST")
def test_sweep_budget_and_normpix_share_runs_and_resume(tmp_path):
    tiny = ["--out", str(tmp_path), "--batch-size", "32", "--train-images", "256", "--test-images", "100",
            "--probe-images", "128", "--finetune-steps", "1", "--seeds", "0"]
    script = [sys.executable, "-m", "experiments.ablations"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    def run(*extra: str, check: bool = True, stderr: bool = False) -> str:
        done = subprocess.run(script + tiny + list(extra), env=env, timeout=600, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0 or not check, done.stderr[-3000:]
        return done.stdout + (done.stderr if stderr else "")

    sweep = ["--epochs", "0.25", "--only", "encoder_mask_tokens", "target"]  # 0.25 x 8 batches: 2 steps
    assert "plan: 4 row(s) of ablations_p7.csv at 2 steps (e0.25): 3 run(s) to evaluate, 3 to pretrain" in run(*sweep)
    rows = list(csv.DictReader(open(tmp_path / "ablations_p7.csv")))
    assert [(r["ablation"], r["value"], r["seed"]) for r in rows] == [
        ("target", "pixels", "0"), ("target", "norm_pix", "0"), ("encoder_mask_tokens", "no (MAE)", "0"),
        ("encoder_mask_tokens", "yes", "0")]
    assert all(r["steps"] == "2" and 0 <= float(r["linear_probe"]) <= 1 for r in rows)
    assert rows[0]["overrides"] == rows[2]["overrides"] == "default" and rows[0]["knn"] == rows[2]["knn"]
    assert "| target | norm_pix | 0 |" in (tmp_path / "ablations_p7.md").read_text()
    assert (tmp_path / "ablations_p7.png").stat().st_size > 10_000
    models = sorted((tmp_path / "runs").rglob("model.pt"))
    assert len(models) == 3 and not list((tmp_path / "runs").rglob("checkpoint.pt"))
    mtimes = {p: p.stat().st_mtime for p in models}
    # Resumable: nothing new to do; a deleted row is measured again from its finished run, not retrained.
    assert "0 run(s) to evaluate" in run(*sweep)
    with open(tmp_path / "ablations_p7.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:3])
    assert "1 run(s) to evaluate, 0 to pretrain" in run(*sweep)
    assert len(list(csv.DictReader(open(tmp_path / "ablations_p7.csv")))) == 4
    # The norm-pix study at the same budget reuses the sweep's pixel and norm-pix runs.
    assert "3 run(s) to evaluate, 0 to pretrain" in run("--epochs", "0.25", "--only", "normpix")
    checks = list(csv.DictReader(open(tmp_path / "normpix_p7.csv")))
    assert len(checks) == 3 * (4 + 4)  # 3 encoders x (4 fine-tunes + 4 feature scales)
    assert "| fine-tune 3 steps, blr 0.004 |" in (tmp_path / "normpix_p7.md").read_text()
    # The budget probe (its 0.25-epoch point is the sweep's default run); then the sweep's budget is its choice.
    printed = run("--only", "budget", "--budget-epochs", "0.25", "0.5")
    assert "epochs   probe %" in printed and "3 run(s) to evaluate, 1 to pretrain" in printed
    assert ("chosen budget:" in printed) != ("no budget has every accuracy" in printed)  # one verdict, either way
    assert [r["budget"] for r in csv.DictReader(open(tmp_path / "budget_p7.csv"))] == ["0", "0.25", "0.5"]
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())
    # The sweep without --epochs takes report.choose_budget's answer from that file (accuracies set here).
    rows = list(csv.DictReader(open(tmp_path / "budget_p7.csv")))
    for row, accuracy in zip(rows, (0.5, 0.6, 0.7)):
        row.update(linear_probe=accuracy, knn=accuracy, finetune=accuracy)
    with open(tmp_path / "budget_p7.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plan = ["--budget-epochs", "0.25", "0.5", "--only", "target", "--plan-only"]
    assert "budget: 0.25 epochs, chosen from" in run(*plan)
    assert "no budget in" in run(*plan, "--budget-margin", "15", check=False, stderr=True)


def sweep_wall_hours(rows: list[dict]) -> float:
    """The seeded sweep's measured cost: pretraining + evaluation seconds, each run counted once."""
    runs = {(r["overrides"], r["seed"]): float(r["pretrain_seconds"]) + float(r["eval_seconds"]) for r in rows}
    return sum(runs.values()) / 3600


def test_readme_and_docs_quote_the_committed_seeded_sweep():
    """The README's verdicts are the committed CSV's, by the committed rule; every setting has 3 seeds."""
    rows = report.read_rows(ROOT / "experiments" / "ablations_p7.csv")
    summary = report.aggregate(rows)
    assert {tuple(e["seeds"]) for e in summary} == {(0, 1, 2)}, "every setting of the sweep holds seeds 0, 1, 2"
    assert len(summary) == len(SWEEPS["p7"].settings)
    table = report.verdict_table(report.verdicts(summary))
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README's verdict table differs from ablations_p7.csv: paste report.verdict_table"
    assert table in (ROOT / "docs" / "ablations.md").read_text()
    assert f"{sweep_wall_hours(rows):.1f} hours" in readme
    assert "python -m experiments.ablations" in readme


def test_seeded_figure_draws_each_row_on_one_scale():
    # A 0.01 loss gap in one ablation beside a 0.3 gap in another: on separate scales both fill their panel.
    rows = (rows_of({("mask_ratio", "0.1"): [0.25] * 3, ("mask_ratio", "0.9"): [0.60] * 3}, "recon_loss")
            + rows_of({("decoder_depth", "1"): [0.395] * 3, ("decoder_depth", "8"): [0.385] * 3}, "recon_loss"))
    fig = report.seeded_figure(report.aggregate(rows), "test")
    try:
        top, bottom = fig.axes[:2], fig.axes[2:4]
        for row in (top, bottom):
            assert row[0].get_ylim() == row[1].get_ylim()
            assert "one scale" in row[0].get_ylabel()  # the figure says so
        low, high = bottom[0].get_ylim()
        assert high - low > 0.3  # the decoder-depth panel spans the mask ratio's range, not its own 0.01
    finally:
        plt.close(fig)
