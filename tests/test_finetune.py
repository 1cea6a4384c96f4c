"""Evaluation and fine-tuning: probe, kNN, confusion matrix, the classifier built from MAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.data import ImageData
from mae_lesson.classifier import ViTClassifier, layer_decay_scales
from mae_lesson.evaluate import confusion_matrix, extract_features, knn_classify, linear_probe, pixel_features
from mae_lesson.finetune import FinetuneArgs, finetune
from mae_lesson.results import evaluate_checkpoint
from mae_lesson.viz import confusion_figure, feature_map_figure, finetune_curve_figure

CFG = {"img_size": 8, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "encoder_depth": 2, "encoder_num_heads": 2,
       "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}


def clusters(n_per_class=60, classes=3, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 4
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def toy_images(n=96, seed=0) -> ImageData:
    """Class 0: bright top half, class 1: bright bottom half (survives horizontal flips)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels):
        images[i, :, (0 if y == 0 else 4):(4 if y == 0 else 8), :] += 180
    return ImageData(images, labels, ("top", "bottom"), (0.4,), (0.3,))


@pytest.mark.slow
def test_linear_probe_and_knn_learn_separable_features():
    x, y = clusters()
    x_test, y_test = x + 0.1 * torch.randn_like(x), y
    assert linear_probe(x, y, x_test, y_test, epochs=20, batch_size=32, lr=1e-2)["accuracy"] > 0.95
    assert knn_classify(x, y, x_test, y_test, k=5)["accuracy"] > 0.95
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert knn_classify(x, shuffled, x_test, y_test, k=5)["accuracy"] < 0.7  # labels carry no signal


def test_knn_uses_cosine_not_euclidean():
    train, labels = torch.tensor([[10.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 1])
    query = torch.tensor([[4.0, 1.0]])  # Euclidean: nearer [1, 1] (3.0 vs 6.1); by angle: [10, 0] (14 vs 31 degrees)
    assert knn_classify(train, labels, query, torch.tensor([0]), k=1)["predictions"].item() == 0


def test_confusion_matrix_counts():
    pred, true = torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0])
    cm = confusion_matrix(pred, true, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    fig = confusion_figure(pred, true, ("a", "b", "c"))
    assert fig.axes


def test_features_shapes_and_order():
    model = MAE(CFG)
    data = toy_images(10)
    cls = extract_features(model, data, "cls", progress=False)
    both = extract_features(model, data, "both", progress=False)
    assert cls.shape == (10, 16) and both.shape == (10, 32)
    torch.testing.assert_close(both[:, :16], cls)
    assert pixel_features(data).shape == (10, 64)
    assert feature_map_figure(both, data.labels, data.classes).axes


def test_classifier_copies_encoder_and_matches_mae_features():
    mae = MAE(CFG)
    clf = ViTClassifier.from_mae(mae, num_classes=2, drop_path=0.0).eval()
    for name, tensor in mae.state_dict().items():
        if name.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed")):
            assert torch.equal(clf.state_dict()[name], tensor), name
    imgs = torch.randn(3, 1, 8, 8)
    latent, _, _ = mae.forward_encoder(imgs, 0.0)
    pooled = clf.fc_norm(latent[:, 1:].mean(dim=1))  # MAE's encoder ends with `norm`; the classifier pools first
    manual = clf.head(pooled)
    x = clf.patch_embed(imgs) + clf.pos_embed[:, 1:]
    x = torch.cat([(clf.cls_token + clf.pos_embed[:, :1]).expand(3, -1, -1), x], 1)
    for blk in clf.blocks:
        x = blk(x)
    torch.testing.assert_close(clf(imgs), clf.head(clf.fc_norm(x[:, 1:].mean(1))))
    assert manual.shape == (3, 2)


def test_layer_decay_scales():
    clf = ViTClassifier(MAE(CFG).config, 2)
    scales = layer_decay_scales(clf, 0.5)
    assert scales["head.weight"] == 1.0 and scales["fc_norm.weight"] == 1.0
    assert scales["blocks.1.attn.qkv.weight"] == 0.5 and scales["blocks.0.mlp.fc1.bias"] == 0.25
    assert scales["patch_embed.proj.weight"] == 0.125 and scales["cls_token"] == 0.125


@pytest.mark.slow
def test_finetune_learns_toy_task_and_scratch_runs():
    train, test = toy_images(256), toy_images(64, seed=1)
    args = FinetuneArgs(epochs=8, batch_size=32, blr=2e-2, warmup_epochs=0.5, drop_path=0.0, label_smoothing=0.0,
                        crop_scale=1.0, progress=False)
    mae = MAE(CFG)
    result = finetune(mae, train, test, args)
    assert result["accuracy"] >= 0.9 and result["steps"] == 64
    scratch = finetune(None, train, test, args, config=mae.config)
    assert 0.0 <= scratch["accuracy"] <= 1.0 and scratch["predictions"].shape == (64,)
    again = finetune(mae, train, test, args)
    assert again["accuracy"] == result["accuracy"]  # seeded


@pytest.mark.slow
def test_eval_every_epoch_records_a_curve_without_changing_training():
    train, test = toy_images(128), toy_images(64, seed=1)
    args = FinetuneArgs(epochs=3, batch_size=32, blr=2e-2, warmup_epochs=0.5, drop_path=0.1, label_smoothing=0.0,
                        crop_scale=0.8, progress=False)
    mae = MAE(CFG)
    plain = finetune(mae, train, test, args)
    assert plain["history"] == [(3.0, plain["accuracy"])]
    curve = finetune(mae, train, test, FinetuneArgs(**{**args.__dict__, "eval_every_epoch": True}))
    assert [epoch for epoch, _ in curve["history"]] == [1.0, 2.0, 3.0]
    # evaluating in between must not touch the training randomness (drop path, crops)
    assert curve["accuracy"] == plain["accuracy"] and torch.equal(curve["predictions"], plain["predictions"])
    fig = finetune_curve_figure({"MAE": [curve["history"]], "scratch": [plain["history"]]})
    assert len(fig.axes[0].lines) == 2


@pytest.mark.slow
def test_evaluate_checkpoint_pools_cls_mean_or_both():
    train, test = toy_images(64), toy_images(32, seed=1)
    mae = MAE(CFG)
    widths = {pool: evaluate_checkpoint(mae, train, test, probe_epochs=2, device="cpu", progress=False,
                                        pool=pool)["test_features"].shape for pool in ("cls", "mean", "both")}
    assert widths == {"cls": (32, 16), "mean": (32, 16), "both": (32, 32)}
    cls = evaluate_checkpoint(mae, train, test, probe_epochs=2, device="cpu", progress=False)["test_features"]
    assert torch.equal(cls, extract_features(mae, test, "cls", progress=False))  # cls stays the default


@pytest.mark.slow
def test_results_table_end_to_end_on_toy_data(tmp_path, monkeypatch):
    import json

    import mae_lesson.results as ft

    data = {"train": toy_images(64), "test": toy_images(32, seed=1)}
    monkeypatch.setattr(ft, "load_dataset", lambda name, root, split, **at: data[split])  # no Fashion-MNIST needed
    MAE(CFG).save_checkpoint(tmp_path / "mae.pt")
    args = FinetuneArgs(epochs=2, batch_size=32, warmup_epochs=0.5, progress=False, eval_every_epoch=True)
    table = ft.results_table(tmp_path / "mae.pt", tmp_path / "out", [0, 1], args, probe_epochs=2)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["rows"]["MAE pretrained (mae.pt)"]["finetune"]) == 2  # not a shipped checkpoint: its name
    assert [len(runs) for runs in saved["finetune_histories"].values()] == [2, 2]
    assert [e for e, _ in saved["finetune_histories"]["ViT from scratch, same budget"][0]] == [1.0, 2.0]
    assert all(s > 0 for runs in saved["finetune_seconds"].values() for s in runs)
    assert "(n=2)" in table and table == (tmp_path / "out" / "results.md").read_text().strip()
    for figure in ("confusion_finetune.png", "feature_map.png", "finetune_curve.png"):
        assert (tmp_path / "out" / figure).stat().st_size > 0


def test_probe_mode_scores_each_requested_pool_and_records_them(tmp_path, monkeypatch, capsys):
    import json

    import mae_lesson.results as ft
    from mae_lesson.run import finetune_cli

    data = {"train": toy_images(64), "test": toy_images(32, seed=1)}
    monkeypatch.setattr(ft, "load_dataset", lambda name, root, split, **at: data[split])  # no Fashion-MNIST needed
    MAE(CFG).save_checkpoint(tmp_path / "mae.pt")
    finetune_cli.main(["--mode", "probe", "--checkpoint", str(tmp_path / "mae.pt"), "--pool", "cls", "both",
             "--probe-epochs", "2", "--out", str(tmp_path / "eval"), "--no-progress"])
    saved = json.loads((tmp_path / "eval" / "probe.json").read_text())
    assert list(saved["scores"]) == ["cls", "both"] and saved["probe_epochs"] == 2
    mae = MAE.from_checkpoint(tmp_path / "mae.pt").float()
    for pool in ("cls", "both"):
        direct = evaluate_checkpoint(mae, data["train"], data["test"], probe_epochs=2, progress=False, pool=pool)
        assert saved["scores"][pool] == {"linear_probe": direct["linear_probe"], "knn": direct["knn"]}
    printed = capsys.readouterr().out
    assert "cls features: linear probe" in printed and "both features: linear probe" in printed


def test_command_line_defaults_reproduce_the_committed_results_table():
    """`python -m mae_lesson.finetune --mode table` alone runs the recipe, seeds and checkpoint of docs/results."""
    from mae_lesson.run.finetune_cli import build_parser
    from mae_lesson.pretrained import pretrained_path

    committed = json.loads((Path(__file__).resolve().parent.parent / "docs" / "results" / "results.json").read_text())
    ns = build_parser().parse_args([])
    recipe = {k: v for k, v in committed["finetune_args"].items() if k not in ("seed", "device", "progress")}
    assert {k: getattr(ns, k) for k in recipe} == recipe
    assert ns.mode == "table" and ns.probe_epochs == committed["probe_epochs"]
    assert ns.seeds == [0, 1, 2] == list(range(len(committed["rows"]["MAE pretrained (shipped)"]["finetune"])))
    assert Path(ns.checkpoint).name == Path(committed["checkpoint"]).name == pretrained_path().name


def test_linear_probe_batchnorm_option_standardises_the_features():
    x, y = clusters(n_per_class=100)
    tiny = 1e-4 * x  # separable, but at a scale a linear layer with lr 1e-3 cannot use in 20 epochs
    with_bn = linear_probe(tiny, y, tiny, y, epochs=20, batch_size=32)["accuracy"]
    without = linear_probe(tiny, y, tiny, y, epochs=20, batch_size=32, batchnorm=False)["accuracy"]
    assert with_bn > 0.95 and without < 0.7
    # On features of unit scale the probe learns without the BatchNorm as well.
    assert linear_probe(x, y, x, y, epochs=20, batch_size=32, lr=1e-2, batchnorm=False)["accuracy"] > 0.95


def test_evaluate_encoder_is_the_probe_and_knn_on_extracted_features():
    from mae_lesson.evaluate import evaluate_encoder, evaluate_features

    train, test = toy_images(64), toy_images(32, seed=1)
    torch.manual_seed(0)
    mae = MAE(CFG)
    ev = evaluate_encoder(mae, train, test, "mean", probe_epochs=3, seed=2, k=5, progress=False)
    train_x, test_x = (extract_features(mae, d, "mean", progress=False) for d in (train, test))
    probe = linear_probe(train_x, train.labels, test_x, test.labels, epochs=3, seed=2)
    knn = knn_classify(train_x, train.labels, test_x, test.labels, k=5)
    assert torch.equal(ev["test_features"], test_x)
    assert (ev["linear_probe"], ev["knn"]) == (probe["accuracy"], knn["accuracy"])
    assert torch.equal(ev["probe_predictions"], probe["predictions"])
    assert torch.equal(ev["knn_predictions"], knn["predictions"])
    direct = evaluate_features(train_x, train.labels, test_x, test.labels, probe_epochs=3, k=5, seed=2)
    assert direct["linear_probe"] == ev["linear_probe"]
    checkpoint = evaluate_checkpoint(mae, train, test, probe_epochs=3, device="cpu", progress=False, pool="mean")
    assert checkpoint["linear_probe"] == evaluate_encoder(mae, train, test, "mean", 3, progress=False)["linear_probe"]


def _resumable_args(**changes):
    return FinetuneArgs(**{"epochs": 2, "batch_size": 16, "blr": 2e-2, "warmup_epochs": 0.5, "drop_path": 0.1,
                           "mixup": 0.8, "cutmix": 1.0, "auto_augment": "rand-m9-n2", "crop_scale": 0.8,
                           "progress": False, **changes})


def test_a_stopped_finetune_continues_from_its_state_file_as_if_never_stopped(tmp_path, monkeypatch):
    """Stopped after step 5 with a state saved every 2 steps, the run continues from step 4 and ends with the
    weights of an uninterrupted run (drop path, RandAugment and mixup/CutMix included); the file is then gone."""
    import mae_lesson.finetuning as finetuning

    train, test = toy_images(64), toy_images(32, seed=1)
    mae, state = MAE(CFG), tmp_path / "state.pt"
    whole = finetune(mae, train, test, _resumable_args())
    real_step = finetuning.finetune_step

    def stop_at_step_5(run, data, step, *rest):
        if step == 5:
            raise KeyboardInterrupt
        return real_step(run, data, step, *rest)

    monkeypatch.setattr(finetuning, "finetune_step", stop_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        finetune(mae, train, test, _resumable_args(), state_file=state, save_every_steps=2)
    assert state.is_file()
    monkeypatch.setattr(finetuning, "finetune_step", real_step)
    steps_run = []
    monkeypatch.setattr(finetuning, "finetune_step", lambda run, data, step, *rest: steps_run.append(step) or
                        real_step(run, data, step, *rest))
    resumed = finetune(mae, train, test, _resumable_args(), state_file=state, save_every_steps=2)
    assert steps_run == [4, 5, 6, 7] and resumed["steps"] == whole["steps"] == 8
    for (name, a), b in zip(whole["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert resumed["accuracy"] == whole["accuracy"] and not state.exists()


def test_a_state_file_of_other_settings_is_refused(tmp_path, monkeypatch):
    import mae_lesson.finetuning as finetuning

    train, test = toy_images(64), toy_images(32, seed=1)
    state = tmp_path / "state.pt"
    real_step = finetuning.finetune_step
    monkeypatch.setattr(finetuning, "finetune_step",
                        lambda run, data, step, *rest: (_ for _ in ()).throw(KeyboardInterrupt) if step == 3
                        else real_step(run, data, step, *rest))
    with pytest.raises(KeyboardInterrupt):
        finetune(MAE(CFG), train, test, _resumable_args(), state_file=state, save_every_steps=2)
    monkeypatch.setattr(finetuning, "finetune_step", real_step)
    with pytest.raises(ValueError, match=r"other settings \(blr\)"):
        finetune(MAE(CFG), train, test, _resumable_args(blr=1e-2), state_file=state)
    with pytest.raises(ValueError, match=r"other settings \(from_scratch\)"):
        finetune(None, train, test, _resumable_args(), config=MAE(CFG).config, state_file=state)
    assert state.is_file()  # refused, not overwritten


def test_finetune_mode_records_each_seed_skips_recorded_ones_and_continues_a_stopped_run(tmp_path, monkeypatch, capsys):
    import functools
    import json

    import mae_lesson.finetuning as finetuning
    import mae_lesson.results as ft
    from mae_lesson.run import finetune_cli

    data = {"train": toy_images(64), "test": toy_images(32, seed=1)}
    monkeypatch.setattr(ft, "load_dataset", lambda name, root, split, **at: data[split])  # no Fashion-MNIST needed
    monkeypatch.setattr(finetune_cli, "finetune", functools.partial(finetuning.finetune, save_every_steps=4))
    MAE(CFG).save_checkpoint(tmp_path / "mae.pt")
    out = tmp_path / "ft"
    argv = ["--mode", "finetune", "--checkpoint", str(tmp_path / "mae.pt"), "--epochs", "2", "--batch-size", "8",
            "--out", str(out), "--no-progress", "--seeds", "0", "1"]  # 16 steps a seed
    real_step, steps = finetuning.finetune_step, []

    def stop_in_seed_1(run, images, step, *rest):
        steps.append(step)
        if len(steps) == 16 + 11:  # seed 0 whole, then seed 1 stops before its step 10 (saved after step 8)
            raise KeyboardInterrupt
        return real_step(run, images, step, *rest)

    monkeypatch.setattr(finetuning, "finetune_step", stop_in_seed_1)
    with pytest.raises(SystemExit):
        finetune_cli.main(argv)
    recorded = json.loads((out / "finetune.json").read_text())["runs"]
    assert [r["seed"] for r in recorded] == [0] and (out / "finetune_seed1_state.pt").is_file()
    steps.clear()
    monkeypatch.setattr(finetuning, "finetune_step", lambda run, images, step, *rest: steps.append(step) or
                        real_step(run, images, step, *rest))
    finetune_cli.main(argv)
    assert steps == list(range(8, 16))  # seed 0 skipped; seed 1 continued from its state after step 8
    recorded = json.loads((out / "finetune.json").read_text())["runs"]
    assert [r["seed"] for r in recorded] == [0, 1] and not list(out.glob("*_state.pt"))
    assert "finetune seed 0: already in" in capsys.readouterr().out


def test_the_results_table_calls_only_the_course_s_own_checkpoints_shipped(tmp_path):
    from mae_lesson.pretrained import available_pretrained, pretrained_path
    from mae_lesson.results import _which

    assert [_which(pretrained_path(name)) for name in available_pretrained()] == ["shipped"] * len(available_pretrained())
    assert _which(tmp_path / "mae_fashion_mnist_p7.pt") == "mae_fashion_mnist_p7.pt"  # same name, a learner's folder
    assert _which("runs/main/model.pt") == "model.pt"
