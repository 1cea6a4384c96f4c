"""Figures: PCA axes carry the explained variance; attention maps have one scale and colour bar per column."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from mae_lesson.viz import attention_figure, feature_map_figure, principal_components


def test_principal_components_explained_variance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=gen) * torch.tensor([3.0, 1.0, 0.0]) + 5.0  # variances 9 : 1 : 0
    projected, explained = principal_components(x, 2)
    assert projected.shape == (4000, 2)
    torch.testing.assert_close(explained, torch.tensor([0.9, 0.1]), atol=0.01, rtol=0)
    torch.testing.assert_close(projected.var(dim=0), torch.tensor([9.0, 1.0]), atol=0.3, rtol=0)


def test_feature_map_axes_name_the_explained_variance_and_accept_an_axes():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 5, generator=gen) * torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0])
    labels = torch.arange(300) % 3
    fig, axes = plt.subplots(1, 2)
    assert feature_map_figure(feats, labels, ("a", "b", "c"), ax=axes[1]) is fig
    assert "of the variance" in axes[1].get_xlabel() and "PC 2" in axes[1].get_ylabel()
    assert not axes[0].collections, "nothing drawn into the other axes"
    plt.close("all")


def test_attention_figure_layout_and_shared_scale_per_column():
    images = torch.rand(2, 1, 8, 8)
    maps = {m: {"head 1": torch.rand(2, 4) * s, "rollout": torch.rand(2, 4)} for m, s in (("a", 1.0), ("b", 3.0))}
    fig = attention_figure(images, maps, (2, 2), "t")
    grid = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(grid) == 4 * 3  # 2 images x 2 models rows, image + 2 map columns
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 2
    head = next(im for ax in grid for im in ax.images if im.get_array().shape == (2, 2))
    assert head.get_clim()[1] == pytest.approx(max(float(maps[m]["head 1"].max()) for m in maps))
    plt.close("all")


def test_attention_figure_refuses_mismatched_maps():
    images = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"expected \[N, L\] = \[2, 4\]"):
        attention_figure(images, {"a": {"x": torch.rand(2, 5)}}, (2, 2))
    with pytest.raises(ValueError, match="same columns"):
        attention_figure(images, {"a": {"x": torch.rand(2, 4)}, "b": {"y": torch.rand(2, 4)}}, (2, 2))
