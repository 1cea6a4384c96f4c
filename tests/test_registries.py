"""Datasets and mask types are registries: one entry each, which every command picks up."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.config import Config
from mae_lesson.data import DATASETS, ImageData, load_dataset
from mae_lesson.masking import MASK_TYPES, masking_noise

TOY_MODEL = {"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 16, "encoder_depth": 1,
             "encoder_num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}


def toy_loader(root: Path, split: str, download: bool) -> ImageData:
    """Tiny synthetic RGB images, 3 classes: class k has a bright channel k (288 train, 24 test images;
    the ablations fine-tune with batches of 256)."""
    n = 288 if split == "train" else 24
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 80, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels] += 150
    return ImageData(images, labels, ("red", "green", "blue"), (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))


@pytest.fixture
def toy_dataset(monkeypatch):
    monkeypatch.setitem(DATASETS, "toy", toy_loader)
    return "toy"


def test_an_unknown_dataset_lists_the_registered_ones(toy_dataset):
    with pytest.raises(ValueError, match=r"Unknown dataset 'toyy'.*'fashion_mnist', 'cifar10', 'toy'"):
        load_dataset("toyy")
    assert load_dataset("toy", split="test").images.shape == (24, 3, 16, 16)


def test_a_registered_dataset_pretrains_evaluates_and_finetunes_end_to_end(toy_dataset, tmp_path):
    from experiments.ablation_runs import Sweep, evaluate_run, pretrain_args

    from mae_lesson.finetune import FinetuneArgs
    from mae_lesson.pretrain import PretrainArgs, pretrain
    from mae_lesson.results import results_table

    # pretraining: the run records the dataset in the model's config
    overrides = {**TOY_MODEL, "norm_mean": [0.5] * 3, "norm_std": [0.25] * 3}  # replaced by the data's
    run = pretrain(PretrainArgs(config="fashion_mnist_tiny", overrides=overrides, dataset="toy", batch_size=16,
                                epochs=1, max_steps=2, warmup_epochs=0.5, blr=1e-3, out=str(tmp_path / "run"),
                                progress=False, num_figure_images=2, log_every_steps=1))
    mae = MAE.from_checkpoint(run / "model.pt")
    assert mae.config.dataset == "toy" and mae.config.norm_mean == [0.4] * 3
    # evaluation and fine-tuning: the results command reads the dataset from the checkpoint's config
    args = FinetuneArgs(epochs=1, max_steps=2, batch_size=16, warmup_epochs=0.5, progress=False)
    results_table(run / "model.pt", tmp_path / "table", [0], args, data_root=str(tmp_path), probe_epochs=2)
    rows = json.loads((tmp_path / "table" / "results.json").read_text())["rows"]
    assert set(rows["raw pixels (768)"]) == {"linear_probe", "knn"}  # 3 x 16 x 16 pixels: the toy images
    assert 0 <= rows["MAE pretrained (model.pt)"]["finetune"][0] <= 1  # a learner's run, named by its file
    # ablations: a sweep's runs pretrain on --dataset, and evaluate_run scores them on its images
    ns = argparse.Namespace(train=load_dataset("toy"), test=load_dataset("toy", split="test"), batch_size=16,
                            blr=1e-3, train_images=None, data_root="data", dataset="toy", probe_images=None,
                            finetune_steps=2, finetune_blr=1e-3, finetune_crop=0.8)
    sweep = Sweep("fashion_mnist_tiny", [], (0,), "toy.csv", "toy", None, 0.1, None, None)
    assert pretrain_args(ns, sweep, {}, 0, 2, tmp_path / "abl").dataset == "toy"
    scores = evaluate_run(mae, ns, seed=0)
    assert all(0 <= scores[k] <= 1 for k in ("linear_probe", "knn", "finetune")) and scores["recon_loss"] > 0


def checker_noise(batch, grid_hw, mask_ratio, device=None, generator=None):
    """A toy mask type: remove the patches of one colour of a checkerboard (mask_ratio 0.5)."""
    rows = torch.arange(grid_hw[0])[:, None] + torch.arange(grid_hw[1])[None, :]
    return (rows % 2).flatten().float().expand(batch, -1) + 0.1 * torch.rand(batch, rows.numel(), generator=generator)


def test_a_registered_mask_type_is_valid_in_a_config_and_masks_the_model(monkeypatch):
    with pytest.raises(ValueError, match="random, block, grid"):
        Config(TOY_MODEL).replace(mask_type="checker")
    monkeypatch.setitem(MASK_TYPES, "checker", checker_noise)
    cfg = Config(TOY_MODEL).replace(mask_type="checker", mask_ratio=0.5)
    torch.manual_seed(0)
    mae = MAE(cfg)
    mask = mae(torch.randn(2, 3, 16, 16))["mask"]  # [N, L]: 0 keep, 1 removed
    assert mask.tolist() == [[float((i // 4 + i % 4) % 2) for i in range(16)]] * 2
    with pytest.raises(ValueError, match="choose one of random, block, grid, checker"):
        masking_noise("checkers", 2, (4, 4), 0.5)
