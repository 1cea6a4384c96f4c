"""mae_lesson.optim.adamw: the fused AdamW gives the default AdamW's updates to float rounding."""

from __future__ import annotations

import copy

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.data import ImageData
from mae_lesson.finetune import FinetuneArgs, finetune_setup
from mae_lesson.optim import WarmupCosine, adamw, param_groups
from mae_lesson.pretrain import setup_run

from conftest import needs_fmnist, tiny_args


def _train(model: MAE, optimizer: torch.optim.Optimizer, imgs: torch.Tensor, noise: torch.Tensor, steps: int) -> list[float]:
    schedule = WarmupCosine(optimizer, 1e-3, total_steps=steps, warmup_steps=2)
    losses = []
    for _ in range(steps):
        loss = model(imgs, noise=noise)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())
    return losses


def test_adamw_is_fused_where_torch_has_it(tiny_model):
    optimizer = adamw(param_groups(tiny_model, 0.05), 1e-3, betas=(0.9, 0.95))
    assert optimizer.defaults["fused"] is True
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [g["weight_decay"] for g in param_groups(tiny_model, 0.05)]


@pytest.mark.slow
def test_fused_adamw_matches_the_default_loop(tiny_model, tiny_images):
    """Ten steps with weight-decay groups and a schedule: the same losses and weights to float rounding."""
    fused_model, loop_model = tiny_model, copy.deepcopy(tiny_model)
    noise = torch.rand(tiny_images.shape[0], tiny_model.patch_embed.num_patches, generator=torch.Generator().manual_seed(0))
    fused = adamw(param_groups(fused_model, 0.05), 1e-3, betas=(0.9, 0.95))
    loop = torch.optim.AdamW(param_groups(loop_model, 0.05), lr=1e-3, betas=(0.9, 0.95), foreach=False)
    fused_losses = _train(fused_model, fused, tiny_images, noise, 10)
    loop_losses = _train(loop_model, loop, tiny_images, noise, 10)
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(loop_losses), rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(fused_model.named_parameters(), loop_model.parameters()):
        if name.endswith("attn.qkv.bias"):
            # The key bias adds q.b_k to a whole row of scores, which softmax ignores: its gradient is
            # rounding noise, which Adam scales up to full steps. Compare the query and value biases.
            width = a.shape[0] // 3
            a, b = torch.cat([a[:width], a[2 * width:]]), torch.cat([b[:width], b[2 * width:]])
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # The comparison can fail: one step more moves the weights far beyond the tolerance.
    _train(loop_model, loop, tiny_images, noise, 1)
    assert any(not torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(fused_model.parameters(), loop_model.parameters()))


def test_adamw_falls_back_where_torch_has_no_fused_kernel(tiny_model, monkeypatch):
    real = torch.optim.AdamW

    def no_fused(params, **kwargs):
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    optimizer = adamw(param_groups(tiny_model, 0.05), 1e-3)
    assert isinstance(optimizer, real) and not optimizer.defaults["fused"]


@needs_fmnist
def test_the_engine_steps_with_the_fused_adamw(tmp_path):
    run = setup_run(tiny_args(tmp_path / "run"))
    try:
        assert run.optimizer.defaults["fused"] is True
    finally:
        run.close()


def test_fine_tuning_steps_with_the_fused_adamw(tiny_config):
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = ImageData(images, torch.arange(64) % 10, tuple("abcdefghij"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    optimizer = finetune_setup(MAE(tiny_config), data, FinetuneArgs(batch_size=32, epochs=1)).optimizer
    assert optimizer.defaults["fused"] is True
