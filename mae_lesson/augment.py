"""Strong augmentation for fine-tuning and supervised training, with torchvision's own transforms.

The paper fine-tunes with timm's recipe: RandAugment (m9), then per batch mixup (alpha 0.8) or
CutMix (alpha 1.0), one of the two at random (switch probability 0.5), and label smoothing 0.1.
Here RandAugment / TrivialAugmentWide run per image on the loader's normalised batches (after its
crop and flip, timm's order), and MixUp / CutMix per batch; each draws from a seed given per batch,
so a run's augmentation is a function of (seed, epoch, step), like the loader's crops.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .loader import denormalize, normalize

AUTO_AUGMENT_HELP = ("per-image augmentation: none, trivial (TrivialAugmentWide), or rand-mM-nN (RandAugment, "
                     "N ops of magnitude M out of 10; the paper's: rand-m9-n2)")
# timm's magnitude scale has 10 levels (rotate 30 degrees at 10); 11 torchvision bins give the same
# scale, where the default 31 bins would make m9 a 9-degree rotation.
MAGNITUDE_LEVELS = 10
_RAND = re.compile(r"rand-m(\d+)-n(\d+)")


def auto_augment(spec: str) -> v2.Transform | None:
    """The per-image transform named by ``spec`` (``none``, ``trivial`` or ``rand-mM-nN``); ``None`` for none.

    torchvision's RandAugment has no magnitude noise, so timm's ``mstd0.5`` is left out.
    """
    if spec == "none":
        return None
    if spec == "trivial":
        return v2.TrivialAugmentWide()
    match = _RAND.fullmatch(spec)
    if match is None or not 0 <= int(match[1]) <= MAGNITUDE_LEVELS or int(match[2]) < 1:
        raise ValueError(f"--auto-augment {spec!r} is not one of none, trivial or rand-mM-nN with M in 0..10 and "
                         f"N at least 1; the paper's RandAugment is rand-m9-n2")
    return v2.RandAugment(num_ops=int(match[2]), magnitude=int(match[1]), num_magnitude_bins=MAGNITUDE_LEVELS + 1)


def augment_batch(images: torch.Tensor, transform: v2.Transform, mean: tuple[float, ...], std: tuple[float, ...],
                  seed: int) -> torch.Tensor:
    """``transform`` applied to each image of a normalised float batch.

    Args:
        images: ``[N, C, H, W]`` float, normalised with ``mean``/``std`` (a :class:`BatchLoader` batch).
        transform: from :func:`auto_augment`.
        seed: this batch's seed (the loader's ``batch_seed``).

    Returns:
        ``[N, C, H, W]`` float, normalised. Pixels pass through uint8, which the transforms expect;
        one call per image, because a call on a batch would give every image the same ops.
    """
    pixels = (denormalize(images, mean, std) * 255).round().to(torch.uint8)
    threads = torch.get_num_threads()
    # One thread: on 28x28 images, starting threads costs more than the work (measured 0.1 s against
    # 0.7 s per 256 images on 2 busy cores).
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator
            torch.manual_seed(seed)
            out = torch.stack([transform(img) for img in pixels])
    finally:
        torch.set_num_threads(threads)
    return normalize(out, mean, std)


def batch_mixer(mixup: float, cutmix: float, switch_prob: float, classes: int) -> v2.Transform | None:
    """MixUp (``mixup`` alpha), CutMix (``cutmix`` alpha), or one of the two per batch, CutMix with
    probability ``switch_prob`` (timm's ``mixup_switch_prob``); ``None`` when both alphas are 0."""
    mixers = []
    if mixup > 0:
        mixers.append(v2.MixUp(alpha=mixup, num_classes=classes))
    if cutmix > 0:
        mixers.append(v2.CutMix(alpha=cutmix, num_classes=classes))
    if len(mixers) < 2:
        return mixers[0] if mixers else None
    return v2.RandomChoice(mixers, p=[1 - switch_prob, switch_prob])


def soft_targets(images: torch.Tensor, labels: torch.Tensor, classes: int, label_smoothing: float,
                 mixer: v2.Transform | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed images and the smoothed soft targets the cross-entropy sums over.

    Args:
        images: ``[N, C, H, W]`` float; labels: ``[N]`` int64 class indices.
        mixer: from :func:`batch_mixer`, or ``None`` for no mixing.
        seed: this batch's seed.

    Returns:
        ``(images [N, C, H, W], target [N, classes])``; each target row sums to 1. Smoothing after
        mixing equals mixing smoothed targets (both are linear), timm's ``mixup_target``.
    """
    if mixer is None:
        target = F.one_hot(labels, classes).float()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            images, target = mixer(images, labels)
    return images, target * (1 - label_smoothing) + label_smoothing / classes
