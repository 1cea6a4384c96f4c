"""Issue 31's tools: strong augmentation, the long recipes, FLOP budget matching and the study runner."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from experiments import compute_matched as cm
from mae_lesson import MAE, Config
from mae_lesson.augment import augment_batch, auto_augment, batch_mixer, soft_targets
from mae_lesson.cli import check_recipe
from mae_lesson.bundled import load_recipe
from mae_lesson.data import DEBIAN_FASHION_MNIST, ImageData, normalize
from mae_lesson.finetune import FinetuneArgs, finetune
from mae_lesson.flops import forward_flops, train_step_flops

MEAN, STD = (0.2860,), (0.3530,)
TINY_P7 = {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2,
           "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}


def pixels(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


# ------------------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("spec", ["rand-m9-n2", "trivial"])
def test_augment_batch_keeps_shape_and_dtype_and_changes_each_image_differently(spec):
    x = normalize(pixels(16), MEAN, STD)
    out = augment_batch(x, auto_augment(spec), MEAN, STD, seed=3)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    changed = [(out[i] - x[i]).abs().max() > 1e-3 for i in range(16)]
    assert sum(changed) >= 8  # most images get an op that moves pixels
    same = normalize(pixels(1).expand(16, -1, -1, -1), MEAN, STD)  # one image, 16 times
    copies = augment_batch(same, auto_augment(spec), MEAN, STD, seed=3)
    assert len({tuple(c.flatten().tolist()) for c in copies}) > 4  # one call per image: not one op for the batch
    threads = torch.get_num_threads()
    torch.testing.assert_close(augment_batch(x, auto_augment(spec), MEAN, STD, seed=3), out)  # seeded
    assert torch.get_num_threads() == threads  # the one-thread loop gives the threads back
    assert not torch.equal(augment_batch(x, auto_augment(spec), MEAN, STD, seed=4), out)


def test_auto_augment_specs():
    assert auto_augment("none") is None
    ra = auto_augment("rand-m9-n2")
    assert (ra.num_ops, ra.magnitude, ra.num_magnitude_bins) == (2, 9, 11)  # timm's 10-level scale
    for bad in ("rand-m11-n2", "rand9", "randaugment", "rand-m9-n0"):
        with pytest.raises(ValueError, match="rand-m9-n2"):
            auto_augment(bad)


@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixed_smoothed_targets_sum_to_one_and_mix_two_labels(mixup, cutmix):
    x, labels = torch.randn(32, 1, 28, 28), torch.arange(32) % 10
    images, target = soft_targets(x, labels, 10, 0.1, batch_mixer(mixup, cutmix, 0.5, 10), seed=1)
    assert images.shape == x.shape and target.shape == (32, 10)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(32))
    assert not torch.equal(images, x)
    # each row weights its own label and its partner's (the batch rolled by one) above the smoothing floor
    top2 = target.topk(2, dim=1).indices.sort(dim=1).values
    expected = torch.stack([labels, labels.roll(1)], dim=1).sort(dim=1).values
    assert torch.equal(top2, expected)


def test_targets_without_mixing_are_smoothed_one_hots():
    labels = torch.tensor([0, 3, 9])
    _, target = soft_targets(torch.zeros(3, 1, 28, 28), labels, 10, 0.1, None, seed=0)
    assert batch_mixer(0.0, 0.0, 0.5, 10) is None
    torch.testing.assert_close(target[1], torch.tensor([0.01] * 3 + [0.91] + [0.01] * 6))


def test_switch_prob_picks_cutmix_or_mixup():
    x, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    only_cutmix = batch_mixer(0.8, 1.0, 1.0, 10)
    images, _ = soft_targets(x, labels, 10, 0.0, only_cutmix, seed=2)
    # CutMix pastes a box: every pixel comes from the image itself or from its partner, unmixed
    from_self, from_partner = images == x, images == x.roll(1, 0)
    assert (from_self | from_partner).all()


def test_finetune_with_the_paper_recipe_is_seeded_and_differs_from_no_augmentation():
    g = torch.Generator().manual_seed(0)
    data = ImageData(pixels(32), torch.randint(0, 10, (32,), generator=g), tuple("abcdefghij"), MEAN, STD)
    recipe = {**load_recipe("finetune_paper"), "epochs": 1, "max_steps": 3, "batch_size": 8, "progress": False}
    model = MAE(Config(TINY_P7))

    def weights(**change):
        out = finetune(model, data, data, FinetuneArgs(**{**recipe, **change}))["model"]
        return torch.cat([p.detach().flatten() for p in out.parameters()])

    first = weights()
    torch.testing.assert_close(weights(), first, rtol=0, atol=0)
    assert not torch.equal(weights(auto_augment="none", mixup=0.0, cutmix=0.0), first)


# -------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("name", ["finetune_paper", "scratch_deit"])
def test_long_recipes_load_and_build_finetune_args(name):
    recipe = load_recipe(name)
    check_recipe(FinetuneArgs, recipe, name)
    args = FinetuneArgs(**recipe)
    assert args.auto_augment == "rand-m9-n2" and (args.mixup, args.cutmix, args.mix_switch_prob) == (0.8, 1.0, 0.5)
    assert args.label_smoothing == 0.1 and args.drop_path == 0.1
    assert args.epochs >= 50


def test_new_finetune_fields_default_off():
    args = FinetuneArgs()
    assert (args.auto_augment, args.cutmix, args.mixup) == ("none", 0.0, 0.0)
    with pytest.raises(ValueError, match="cutmix"):
        FinetuneArgs(cutmix=-1.0)
    with pytest.raises(ValueError, match="rand-m9-n2"):
        FinetuneArgs(auto_augment="rand")


# ------------------------------------------------------------------------------ FLOP budget
def test_finetune_step_flops_is_patch_embed_and_encoder_on_every_patch():
    cfg = Config(TINY_P7)  # 16 patches of 7x7x1, width 16, one block, MLP 64, 17 tokens with cls
    patch_embed = 2 * 16 * 49 * 16
    block = 2 * 17 * 16 * (4 * 16) + 2 * 2 * 17 * 16 * 64 + 2 * 2 * 17 * 17 * 16
    assert cm.finetune_step_flops(cfg, 4) == 3 * 4 * (patch_embed + block)
    assert cm.finetune_step_flops(cfg, 4) < 3 * forward_flops(cfg, 4, mask_ratio=0.0)  # no decoder


def test_budget_matching_is_monotone_and_uses_the_package_flops():
    cfg = Config.from_file("fashion_mnist_p7")
    total = cm.budget_flops(cfg, 100, 256, 50, 256)
    assert total == 100 * train_step_flops(cfg, 256) + 50 * cm.finetune_step_flops(cfg, 256)
    steps = [cm.matched_steps(cm.budget_flops(cfg, p, 256, 2340, 256), cfg, 256) for p in (0, 11700, 35100)]
    assert steps[0] == 2340 and steps[0] < steps[1] < steps[2]
    assert abs(steps[2] * cm.finetune_step_flops(cfg, 256) - cm.budget_flops(cfg, 35100, 256, 2340, 256)) \
        <= cm.finetune_step_flops(cfg, 256) / 2


def test_pretraining_cost_reads_the_last_record_of_each_epoch(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, [(1, 2, 5.0), (1, 2, 7.0), (2, 4, 6.0)])
    assert cm.pretraining_cost(ckpt) == {"epochs": 2, "steps": 4, "seconds": 13.0, "batch_size": 8}
    with pytest.raises(FileNotFoundError, match="run folder"):
        cm.pretraining_cost(tmp_path / "elsewhere.pt")


def test_pretraining_cost_reads_a_pretraining_run_folder_s_own_model(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, [(1, 3, 4.0)])
    run = ckpt.with_name("tiny_run")
    (run / "model.pt").write_bytes(ckpt.read_bytes())  # what `python -m mae_lesson.pretrain --out run` leaves
    assert cm.run_folder(run / "model.pt") == run == cm.run_folder(ckpt)
    assert cm.pretraining_cost(run / "model.pt")["steps"] == 3


def test_a_warm_up_longer_than_half_the_run_is_halved_and_others_are_kept(monkeypatch):
    seen = {}
    monkeypatch.setattr(cm, "finetune", lambda mae, train, test, args, **k: seen.setdefault(args.max_steps, args)
                        and {"accuracy": 0.5, "seconds": 1.0})
    data = ImageData(pixels(64), torch.arange(64) % 10, tuple("abcdefghij"), MEAN, STD)
    ns = cm.build_parser().parse_args(["--batch-size", "8"])
    budget = {"mae": MAE(Config(TINY_P7)), "cost": {"epochs": 1, "steps": 2, "batch_size": 8, "seconds": 3.0},
              "finetune": 16, "scratch": 6}
    cm.run_arm("scratch", budget, {}, 0, data, data, ns)  # 6 steps of 8 a epoch: DeiT's 5 epochs would never end
    cm.run_arm("finetune", budget, {}, 0, data, data, ns)  # 2 epochs: the recipe's 0.3 is kept
    assert seen[6].warmup_epochs == 6 / 8 / 2 and seen[16].warmup_epochs == load_recipe("finetune_table")["warmup_epochs"]
    long = {**budget, "scratch": 800}  # 100 epochs: DeiT's 5 are kept
    cm.run_arm("scratch", long, {}, 0, data, data, ns)
    assert seen[800].warmup_epochs == load_recipe("scratch_deit")["warmup_epochs"]


def test_a_search_alone_says_where_its_rows_are(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cm, "run_study", lambda ns: None)
    cm.main(["--csv", str(tmp_path / "s.csv"), "--seeds", "--search-csv", str(tmp_path / "mine.csv")])
    assert f"no final rows yet: the search is in {tmp_path / 'mine.csv'}" in capsys.readouterr().out
    assert not (tmp_path / "s.png").exists()


# --------------------------------------------------------------------------------- runner
def tiny_checkpoint(folder: Path, epochs=((1, 2, 3.0),)) -> Path:
    """A tiny 28x28 patch-7 MAE and a run folder: (epoch, step, seconds) records, batch 8."""
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    MAE(Config(TINY_P7)).save_checkpoint(path)
    run = folder / "tiny_run"
    run.mkdir()
    (run / "args.json").write_text(json.dumps({"batch_size": 8}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"kind": "epoch", "epoch": e, "step": s, "seconds": t}) + "\n"
                                               for e, s, t in epochs))
    return path


needs_data = pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed")


@pytest.mark.slow
@needs_data
def test_runner_writes_rows_resumes_and_searches(tmp_path, capsys, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path)
    out = tmp_path / "study.csv"
    toy = ["--checkpoints", str(ckpt), "--csv", str(out), "--train-images", "64", "--test-images", "40",
           "--finetune-epochs", "1", "--batch-size", "8", "--state-dir", str(tmp_path / "state")]
    cm.main(toy + ["--plan"])
    assert not out.exists()
    assert "pretraining 1 epochs, 2 steps" in capsys.readouterr().out
    cm.main(toy + ["--seeds", "0"])
    rows = cm.read_rows(out)
    assert [(r["arm"], r["seed"]) for r in rows] == [("finetune", "0"), ("scratch", "0")]
    assert {r["test_images"] for r in rows} == {"40"} and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    ft, scratch = rows
    # FLOPs matched: the scratch arm's steps cover the pretraining's 2 steps too
    assert int(ft["steps"]) == 64 // 8 < int(scratch["steps"])
    assert abs(int(scratch["flops"]) - int(ft["flops"])) <= cm.finetune_step_flops(Config(TINY_P7), 8) / 2
    assert float(ft["pretrain_seconds"]) == 3.0 and float(ft["seconds"]) >= 3.0

    assert not list((tmp_path / "state").glob("*.pt"))  # no run left a state file behind

    ran, states = [], []
    monkeypatch.setattr(cm, "finetune", lambda *a, **k: ran.append(a) or states.append(k["state_file"])
                        or {"accuracy": 0.5, "seconds": 1.0})
    cm.main(toy + ["--seeds", "0", "1"])  # seed 0 is in the CSV: only seed 1's two runs train
    assert len(ran) == 2 and [r["seed"] for r in cm.read_rows(out)] == ["0", "0", "1", "1"]

    ran.clear()
    cm.main(toy + ["--seeds", "--search", "blr=1e-3,4e-3", "--val-images", "16"])  # the search alone
    search = cm.read_rows(tmp_path / "study_search.csv")
    assert len(search) == 4 and {r["test_images"] for r in search} == {"16"} and len(ran) == 4
    assert len(cm.read_rows(out)) == 4
    cm.main(toy + ["--seeds", "2", "--search", "blr=1e-3,4e-3", "--val-images", "16"])  # search rows are reused
    assert len(ran) == 6
    assert len(set(states)) == len(states) == 8 and all(p.parent == tmp_path / "state" for p in states)  # one per run
    assert all(json.loads(r["settings"])["blr"] in (1e-3, 4e-3) for r in cm.read_rows(out)[-2:])


def test_best_settings_take_this_budgets_search_or_the_nearest():
    rows = [{"budget": "50", "arm": "scratch", "accuracy": a, "settings": json.dumps({"blr": b})}
            for a, b in ((0.90, 1e-3), (0.91, 2e-3), (0.89, 4e-3))]
    rows.append({"budget": "150", "arm": "scratch", "accuracy": 0.95, "settings": json.dumps({"blr": 4e-3})})
    assert cm.best_settings(rows, 50, "scratch") == {"blr": 2e-3}
    assert cm.best_settings(rows, 60, "scratch") == {"blr": 2e-3}
    assert cm.best_settings(rows, 150, "scratch") == {"blr": 4e-3}
    assert cm.best_settings(rows, 50, "finetune") == {}


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=cm.COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in cm.COLUMNS})


@pytest.mark.parametrize("scratch_acc,verdict", [(0.880, "Yes"), (0.950, "No"), (0.9205, "Not measurably")])
def test_figures_only_draws_the_figure_table_and_answer(tmp_path, capsys, scratch_acc, verdict):
    rows = [{"budget": b, "arm": arm, "seed": s, "epochs": 10, "steps": 2340, "seconds": 3600, "flops": b * 1e13,
             "accuracy": (0.92 + 0.001 * s if arm == "finetune" else scratch_acc + 0.001 * s), "settings": "{}"}
            for b in (50, 150) for arm in ("finetune", "scratch") for s in (0, 1, 2)]
    write_csv(tmp_path / "hand.csv", rows)
    cm.main(["--figures-only", "--csv", str(tmp_path / "hand.csv")])
    printed = capsys.readouterr().out
    assert (tmp_path / "hand.png").stat().st_size > 5000
    assert printed.count("\n| 50 |") == 2 and printed.count("\n| 150 |") == 2
    assert "92.10 ± 0.10 (n=3)" in printed
    table_and_answer, _, readme = printed.partition("\n\nFor the README:\n")
    assert table_and_answer.strip().splitlines()[-1].startswith(verdict)
    assert readme.count("| ViT from scratch, same compute as") == 2  # a row per budget to paste


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    alone = tmp_path / "alone"
    alone.mkdir()
    MAE(Config(TINY_P7)).save_checkpoint(alone / "tiny.pt")  # no tiny_run/ beside it
    for argv, phrase in ((["--figures-only", "--csv", str(tmp_path / "none.csv")], "run the study first"),
                         (["--plan", "--checkpoints", str(alone / "tiny.pt")], "run folder"),
                         (["--search", "blr"], "NAME=V1,V2")):
        with pytest.raises(SystemExit) as stop:
            cm.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and phrase in err and len(err.strip().splitlines()) == 1


def test_one_seed_is_called_one_measurement_and_a_small_budget_keeps_its_digits():
    stats = {(1, "finetune"): {"mean": 80.0, "std": 0.0, "n": 1, "flops": 1.02e13},
             (1, "scratch"): {"mean": 70.0, "std": 0.0, "n": 1, "flops": 1.02e13}}
    sentence = cm.answer(stats)
    assert sentence.startswith("Yes") and "the compute of 1 pretraining epoch (0.0102 PFLOP)" in sentence
    assert sentence.endswith("one measurement, not yet an answer.")
    stats = {k: {**v, "n": 3, "std": 1.0} for k, v in stats.items()}
    assert "One seed" not in cm.answer(stats)


def test_readme_quotes_the_committed_study():
    """The README's compute-matched row and sentence are the committed CSV's (paste `--figures-only`'s lines)."""
    root = Path(__file__).resolve().parents[1]
    stats = cm.summary(cm.read_rows(root / "experiments" / "compute_matched.csv"))
    lines = cm.readme_lines(stats)
    assert lines, "experiments/compute_matched.csv has no budget with both arms"
    readme = " ".join((root / "README.md").read_text().split())  # the sentence may wrap
    for line in lines:
        assert line in readme, f"README.md does not quote the committed study: {line!r}"
    assert cm.answer(stats).split(" (")[0] in readme  # the verdict, word for word
