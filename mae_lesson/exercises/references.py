"""Each exercise's reference answer, taken from the package: what a notebook uses without its solution cell.

The instructor's notebooks hold a hidden solution cell per exercise (``reference_<name>``); the
student edition (``python tools/student_edition.py``) replaces it with
``reference_<name> = reference("<name>")``, so ``use()`` still has a reference to fall back on.
Every entry takes the same arguments as the notebook's ``my_<name>`` stub and passes its checker
(tests/test_references.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .. import flops
from ..classifier import layer_decay_scales
from ..config import Config
from ..data import BatchLoader
from ..evaluate import knn_classify, linear_probe
from ..loss import normalize_patches
from ..masking import num_kept
from ..model import MAE
from ..optim import WarmupCosine, scaled_lr
from ..patch_embed import unpatchify
from ..pos_embed import get_2d_sincos_pos_embed
from ..transformer import plain_attention
from ..utils import model_device
from . import assembly
from .ablations import accuracy_standard_error, difference_standard_error
from .finetune_loop import _loop_variant
from . import stretch, stretch_training
from .training import reference_train_one_epoch, reference_train_step


def encoder_tokens(img_size: int, patch_size: int, mask_ratio: float) -> int:
    """1 cls token + the visible patches of one image."""
    return 1 + num_kept((img_size // patch_size) ** 2, mask_ratio)


def sincos_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """``[grid_size**2, embed_dim]``, the table without its cls row."""
    return get_2d_sincos_pos_embed(embed_dim, grid_size)


def masked_images(imgs: torch.Tensor, mask: torch.Tensor, p: int) -> torch.Tensor:
    """``imgs [N, C, H, W]`` with the patches of ``mask [N, L]`` (1 = removed) zeroed."""
    n, c, h, w = imgs.shape
    pixels = unpatchify(mask[:, :, None].expand(n, mask.shape[1], p * p * c), p, c, (h, w))
    return imgs * (1 - pixels)


def block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The package's pre-norm block, ``[N, T, D] -> [N, T, D]``."""
    return block(x)


def mae_forward(model: MAE, imgs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, pred [N, L, p*p*C], mask [N, L])`` composed from the pieces of notebooks 01-05."""
    latent, mask, ids_restore = assembly.forward_encoder(model, imgs, model.mask_ratio, noise)
    pred = assembly.forward_decoder(model, latent, ids_restore)
    return assembly.mae_loss(assembly.patchify(imgs, model.patch_size), pred, mask, model.norm_pix_loss), pred, mask


def scaled_lr_of(blr: float, batch_size: int, accum_iter: int = 1) -> float:
    """The linear scaling rule for ``batch_size * accum_iter`` images per optimizer step."""
    return scaled_lr(blr, batch_size * accum_iter)


def lr_schedule(step: int, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate before step ``step``, from the engine's own schedule."""
    unused = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    return WarmupCosine(unused, base_lr, total_steps, warmup_steps, min_lr).lr_at(step)


def mean_pool(latent: torch.Tensor) -> torch.Tensor:
    """``[N, 1 + L, D]`` -> ``[N, D]``: the mean of the patch tokens (as ``extract_features(pool="mean")``)."""
    return latent[:, 1:, :].mean(dim=1)


def linear_probe_predictions(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, epochs: int = 30,
                             batch_size: int = 1024, lr: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """The package's linear probe; the predicted classes of ``test_x`` ``[M]``."""
    unknown = torch.zeros(len(test_x), dtype=torch.long)  # the predictions do not depend on the test labels
    return linear_probe(train_x, train_y, test_x, unknown, epochs, batch_size, lr, seed=seed)["predictions"]


def knn(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int = 20,
        temperature: float = 0.07) -> torch.Tensor:
    """The package's weighted kNN; the predicted classes of ``test_x`` ``[M]``."""
    unknown = torch.zeros(len(test_x), dtype=torch.long)
    return knn_classify(train_x, train_y, test_x, unknown, k, temperature)["predictions"]


def classifier_head(x: torch.Tensor, fc_norm: nn.Module, head: nn.Module) -> torch.Tensor:
    """The last block's output ``[N, 1 + L, D]`` -> logits, as ``ViTClassifier.forward`` ends."""
    return head(fc_norm(mean_pool(x)))


class _BatchesOn:
    """A :class:`BatchLoader` whose batches arrive on ``device`` (the model's)."""

    def __init__(self, loader: BatchLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def batch(self, k: int) -> tuple[Any, ...]:
        return tuple(t.to(self.device) if isinstance(t, torch.Tensor) else t for t in self.loader.batch(k))


def finetune_steps(model: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer,
                   schedule: WarmupCosine, steps: int, label_smoothing: float = 0.1) -> list[float]:
    """``steps`` optimizer steps of the checker's own loop, on the model's device; the loss of each step."""
    return _loop_variant(model, _BatchesOn(loader, model_device(model)), optimizer, schedule, steps,
                         label_smoothing, "none")


def forward_flops(config: Config, mask_ratio: float) -> int:
    """Matmul FLOPs of one image's forward pass."""
    return flops.forward_flops(Config(config), 1, mask_ratio)


REFERENCES: dict[str, Callable[..., Any]] = {
    "encoder_tokens": encoder_tokens,
    "patchify": assembly.patchify,
    "sincos_2d": sincos_2d,
    "random_masking": assembly.random_masking,
    "masked_images": masked_images,
    "attention": plain_attention,
    "block_forward": block_forward,
    "forward_encoder": assembly.forward_encoder,
    "unshuffle": assembly.unshuffle,
    "forward_decoder": assembly.forward_decoder,
    "normalize_patches": normalize_patches,
    "mae_loss": assembly.mae_loss,
    "mae_forward": mae_forward,
    "scaled_lr": scaled_lr_of,
    "lr_schedule": lr_schedule,
    "train_step": reference_train_step,
    "train_one_epoch": reference_train_one_epoch,
    "mean_pool": mean_pool,
    "linear_probe": linear_probe_predictions,
    "knn": knn,
    "classifier_head": classifier_head,
    "layer_decay_scales": layer_decay_scales,
    "finetune_steps": finetune_steps,
    "forward_flops": forward_flops,
    "standard_error": accuracy_standard_error,
    "difference_se": difference_standard_error,
    # the optional stretch exercises of 01-07
    "sincos_grid": stretch.sincos_grid,
    "block_mask": stretch.block_mask,
    "attention_rollout": stretch.attention_rollout,
    "scatter_tokens": stretch.scatter_tokens,
    "unnormalize_pred": stretch.unnormalize_pred,
    "accumulate_grads": stretch_training.accumulate_grads,
    "cutmix": stretch_training.cutmix,
}


def reference(name: str) -> Callable[..., Any]:
    """The package's answer to exercise ``name``, called like the notebook's ``my_<name>``."""
    if name not in REFERENCES:
        raise KeyError(f"no reference for exercise {name!r}; the exercises are: {', '.join(sorted(REFERENCES))}")
    return REFERENCES[name]
