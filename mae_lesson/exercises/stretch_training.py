"""Checkers for the optional stretch exercises of notebooks 06 and 07, and the package's answers.

- 06, ``accumulate_grads``: gradient accumulation over equal micro-batches, checked against ONE backward
  of the whole batch (every parameter's gradient and the loss) on a tiny model;
- 07, ``cutmix``: a CutMix batch for a given pairing ``perm`` and box, the targets mixed by the area
  actually pasted.

As in :mod:`.stretch`, each exercise has a table of known mistakes, ``*_MISTAKES``: :class:`~._judge.Mistake`
rows whose ``wrong(case)`` computes the wrong answer from the check's inputs ``case``, read by :func:`~._judge.judge`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..model import MAE
from ._feedback import ExerciseError, as_float, call_learner, checker, passed
from ._judge import Mistake, close, fail, first_values, judge, judge_shape
from ._models import tiny_mae
from .stretch import _row

# float32: four micro-batches against one backward differ in the last bits only
ACCUM_ATOL, ACCUM_RTOL = 1e-6, 1e-4


# ------------------------------------------------------------------ 06: gradient accumulation
def _accumulate(model: MAE, imgs: torch.Tensor, noise: torch.Tensor, accum_iter: int, *, divide: bool = True,
                clear: bool = False, split: str = "chunks", report: str = "mean") -> float:
    """Forward and backward on ``accum_iter`` micro-batches; the keywords give the known wrong ones."""
    size = imgs.shape[0] // accum_iter
    losses = []
    for i in range(accum_iter):
        chunk = slice(i * size, (i + 1) * size)
        x = imgs[i::accum_iter] if split == "strided_images" else imgs[chunk]
        z = noise[:size] if split == "first_noise" else noise[chunk]
        if clear:
            model.zero_grad(set_to_none=True)
        loss = model(x, noise=z)["loss"]
        (loss / accum_iter if divide else loss).backward()
        losses.append(loss.item())
    return {"mean": sum(losses) / accum_iter, "last": losses[-1], "sum": sum(losses)}[report]


def accumulate_grads(model: MAE, imgs: torch.Tensor, noise: torch.Tensor, accum_iter: int) -> float:
    """Leave in ``p.grad`` the gradients of the whole batch's loss, from ``accum_iter`` micro-batches.

    Args:
        model: an MAE whose gradients the caller has cleared (no optimiser step, no ``zero_grad`` here).
        imgs: ``[N, C, H, W]``, N divisible by ``accum_iter``; noise: ``[N, L]``, the batch's mask noise.
    Returns:
        The whole batch's loss, a float: the mean of the equal micro-batches' losses (exact, because every
        image removes the same number of patches).
    """
    if imgs.shape[0] % accum_iter or noise.shape[0] != imgs.shape[0]:
        raise ValueError(f"imgs has {imgs.shape[0]} images and noise {noise.shape[0]} rows: both must be the same "
                         f"multiple of accum_iter={accum_iter} (choose a batch size divisible by accum_iter)")
    return _accumulate(model, imgs, noise, accum_iter)


def _grads(model: MAE) -> dict[str, torch.Tensor | None]:
    """Every trainable parameter's gradient by name (``None`` where there is none)."""
    return {name: None if p.grad is None else p.grad.detach().clone()
            for name, p in model.named_parameters() if p.requires_grad}


def accumulation_outcome(fn: Callable[..., Any], case: tuple, call: Callable[..., Any] | None = None) -> tuple[Any, dict]:
    """``fn(model, imgs, noise, accum_iter)`` on a fresh tiny model whose gradients are cleared: (what it
    returns, the gradients it left). ``call(fn, *args)`` runs it (default: a plain call)."""
    imgs, noise, accum_iter = case
    model = tiny_mae(0, eval=False, randomise=True)
    model.zero_grad(set_to_none=True)
    returned = (call or (lambda f, *args: f(*args)))(fn, model, imgs.clone(), noise.clone(), accum_iter)
    return returned, _grads(model)


def whole_batch(case: tuple) -> tuple[float, dict]:
    """The truth: one forward and one backward of the whole batch's loss -> (the loss, the gradients)."""
    return accumulation_outcome(lambda model, imgs, noise, _: _accumulate(model, imgs, noise, 1), case)


def _variant(name: str, message: str, **wrong: Any) -> Mistake:
    """A mistake whose wrong answer is :func:`_accumulate` with the keywords ``wrong``: its loss and gradients."""
    return Mistake(name, lambda case: accumulation_outcome(functools.partial(_accumulate, **wrong), case), message)


# The case: (imgs [8, 1, 16, 16], noise [8, 16], accum_iter).
ACCUM_MISTAKES = (
    _variant("not_divided", "the gradients are accum_iter times too large: backward of each micro-batch's loss adds into "
             "p.grad, so divide each loss by accum_iter first, (loss / accum_iter).backward()", divide=False),
    _variant("cleared_divided", "only the last micro-batch's gradients are left (divided by accum_iter): the gradients "
             "were cleared between micro-batches; backward adds into p.grad, so no zero_grad inside the loop", clear=True),
    _variant("cleared", "only the last micro-batch's gradients are left: the gradients were cleared between "
             "micro-batches; backward adds into p.grad, so no zero_grad inside the loop, and each loss divided by "
             "accum_iter", clear=True, divide=False),
    _variant("same_noise", "every micro-batch used the first micro-batch's mask noise: split noise with the images, "
             "row i of noise is image i's mask", split="first_noise"),
    _variant("split_differently", "the images and the noise are split differently (imgs[i::accum_iter] with "
             "consecutive noise chunks): image i must keep its own noise row i; take the same slice of both",
             split="strided_images"),
    _variant("last_loss", "the returned loss is the last micro-batch's; return the whole batch's loss, the mean of "
             "the micro-batch losses", report="last"),
    _variant("summed_loss", "the returned loss is the sum of the micro-batch losses; return their mean, the whole "
             "batch's loss", report="sum"),
)


def _largest_difference(grads: dict, want: dict) -> tuple[float, str]:
    """The largest gradient difference and the parameter it is in."""
    return max((float((g - want[n]).abs().max()), n) for n, g in grads.items())


def _accum_differs(where: str, loss: float, grads: dict, want: tuple[float, dict]) -> None:
    """Say what no row explains: the loss, else the gradients and where they differ most."""
    if not close(loss, want[0], ACCUM_ATOL, ACCUM_RTOL):
        fail(f"{where}: expected loss {want[0]:.6g} (the whole batch's: the mean of the micro-batch losses), "
             f"got {loss:.6g}")
    diff, name = _largest_difference(grads, want[1])
    fail(f"{where}: expected the gradients of one backward of the whole batch's loss, got gradients that differ "
         f"by up to {diff:.3g} (in {name}). Hint: per micro-batch, model(x, noise=z)['loss'] / accum_iter, then "
         f".backward(); the gradients add up in p.grad")


@checker("accumulate_grads")
def check_accumulate_grads(fn: Callable[[MAE, torch.Tensor, torch.Tensor, int], float]) -> bool:
    """Check ``fn(model, imgs [8, 1, 16, 16], noise [8, 16], accum_iter)`` for accum_iter 1, 2, 4: every trainable
    parameter's gradient and the returned loss against one backward of the whole batch."""
    gen = torch.Generator().manual_seed(0)
    imgs, noise = torch.randn(8, 1, 16, 16, generator=gen), torch.rand(8, 16, generator=gen)
    for accum_iter in (1, 2, 4):
        case = (imgs, noise, accum_iter)
        where = f"accumulate_grads(model, imgs [8, 1, 16, 16], noise [8, 16], accum_iter={accum_iter})"
        loss, grads = accumulation_outcome(
            fn, case, call=lambda f, *args: as_float(call_learner(f, "accumulate_grads", *args), where,
                                                       "return the whole batch's loss, the mean of the micro-batch losses"))
        missing = [name for name, g in grads.items() if g is None]
        if missing:
            fail(f"{where}: expected a gradient in p.grad for every trainable parameter, got None for {len(missing)} of "
                 f"{len(grads)} (e.g. {missing[0]}): call .backward() on every micro-batch's loss, outside torch.no_grad()")
        want = whole_batch(case)
        diff = _largest_difference(grads, want[1])[0]
        judge(where, (loss, grads), want, ACCUM_MISTAKES, case, matches=lambda a, b: close(a, b, ACCUM_ATOL, ACCUM_RTOL),
              found=lambda m: f"{where}: expected loss {want[0]:.6g} and the whole batch's gradients, got loss {loss:.6g} "
                              f"and gradients that differ by up to {diff:.3g}: {m}",
              differs=lambda: _accum_differs(where, loss, grads, want))
    return passed("accumulate_grads", "every gradient and the loss equal one backward of the whole batch, "
                                      "for accum_iter 1, 2 and 4")


# ------------------------------------------------------------------ 07: a CutMix batch
def _clipped(images: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """The height and width of ``box = (top, left, height, width)`` inside the image."""
    top, left, height, width = box
    return max(0, min(height, images.shape[-2] - top)), max(0, min(width, images.shape[-1] - left))


def _area(images: torch.Tensor, box: tuple[int, int, int, int], clip: bool = True) -> float:
    """The share of the image the box covers: clipped at the edges (``clip=False``: the box as requested)."""
    height, width = _clipped(images, box) if clip else box[2:]
    return height * width / (images.shape[-2] * images.shape[-1])


def _paste(images: torch.Tensor, source: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """A copy of ``images`` with the box of ``source`` (one image per image) pasted in; slicing clips the box."""
    top, left, height, width = box
    mixed = images.clone()
    mixed[..., top:top + height, left:left + width] = source[..., top:top + height, left:left + width]
    return mixed


def _targets(own: torch.Tensor, other: torch.Tensor, a: float, num_classes: int) -> torch.Tensor:
    """``(1 - a) * onehot(own) + a * onehot(other)``: ``[N, num_classes]`` float32."""
    return (1 - a) * F.one_hot(own, num_classes).float() + a * F.one_hot(other, num_classes).float()


def cutmix(images: torch.Tensor, labels: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int],
           num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix with a given pairing and box: image ``i`` gets the box of image ``perm[i]``.

    Args:
        images: ``[N, C, H, W]`` (left unchanged); labels: ``[N]`` class indices; perm: ``[N]``, a permutation.
        box: ``(top, left, height, width)``, top and left inside the image; the box is clipped at the edges.
    Returns:
        ``(mixed [N, C, H, W], targets [N, num_classes] float32)`` with
        ``targets = (1 - a) * onehot(labels) + a * onehot(labels[perm])``, ``a`` = clipped area / (H * W).
    """
    top, left, height, width = box
    if not (0 <= top < images.shape[-2] and 0 <= left < images.shape[-1] and height >= 0 and width >= 0):
        raise ValueError(f"box {tuple(box)} must be (top, left, height, width) with top and left inside the "
                         f"{images.shape[-2]}x{images.shape[-1]} image and no negative size")
    if perm.shape[0] != images.shape[0]:
        raise ValueError(f"perm has {perm.shape[0]} entries for {images.shape[0]} images; pass one per image")
    return _paste(images, images[perm], box), _targets(labels, labels[perm], _area(images, box), num_classes)


# The case: (images, labels, perm, box, num_classes).
CUTMIX_MISTAKES = (
    _row("weights_swapped", lambda x, y, p, b, k: (_paste(x, x[p], b), _targets(y[p], y, _area(x, b), k)),
         "the weights are swapped: a, the pasted area's share, goes to the pasted image's label, labels[perm], "
         "and 1 - a to the image's own label"),
    _row("box_not_clipped", lambda x, y, p, b, k: (_paste(x, x[p], b), _targets(y, y[p], _area(x, b, clip=False), k)),
         "a is the area of the box as requested; a box that reaches past the edge pastes less: clip its height and "
         "width to the image first, then a = clipped area / (H * W)"),
    _row("top_left_swapped", lambda x, y, p, b, k: cutmix(x, y, p, (b[1], b[0], b[2], b[3]), k),
         "top and left are swapped: top counts rows (dim -2, the height), left counts columns (dim -1, the width)"),
    _row("height_width_swapped", lambda x, y, p, b, k: cutmix(x, y, p, (b[0], b[1], b[3], b[2]), k),
         "height and width are swapped: the box spans rows top:top + height and columns left:left + width"),
    _row("pasted_from_itself", lambda x, y, p, b, k: (x.clone(), _targets(y, y[p], _area(x, b), k)),
         "the images are unchanged: each box was pasted from the image itself; paste it from images[perm]"),
    _row("perm_inverted", lambda x, y, p, b, k: cutmix(x, y, p.argsort(), b, k),
         "the pairing is inverted: image perm[i] got image i's box; image i gets the box of image perm[i], "
         "mixed[i] from images[perm[i]]"),
    _row("labels_not_permuted", lambda x, y, p, b, k: (_paste(x, x[p], b), F.one_hot(y, k).float()),
         "the labels are not permuted: the pasted part's label is labels[perm], not labels"),
    _row("own_weight_kept", lambda x, y, p, b, k: (_paste(x, x[p], b), _targets(y, y[p], _area(x, b), k)
                                                   + _area(x, b) * F.one_hot(y, k).float()),
         "each target row sums to 1 + a: the own label kept weight 1; give it 1 - a, so that every row sums to 1"),
)


def _pair(got: Any, where: str, shapes: tuple[list[int], list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's ``(mixed, targets)``, their shapes and the targets' dtype checked (the contract)."""
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        fail(f"{where}: expected a pair (mixed {shapes[0]}, targets {shapes[1]}), got {type(got).__name__}"
             + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    judge_shape(f"{where}, mixed", got[0], shapes[0], hint="image i with the box of image perm[i] pasted in")
    judge_shape(f"{where}, targets", got[1], shapes[1], hint="one row of num_classes weights per image")
    if got[1].dtype != torch.float32:
        fail(f"{where}: expected float32 targets, got {got[1].dtype}: the weights 1 - a and a are fractions, and the "
             f"cross-entropy takes float32 soft targets (F.one_hot gives int64: .float() it)")
    return got[0], got[1]


def _cutmix_differs(where: str, got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Say what no row explains: which image differs, else the targets' row sums, else their values."""
    if not close(got[0], want[0]):
        image = int((got[0] - want[0]).flatten(1).abs().amax(dim=1).argmax())
        fail(f"{where}: expected mixed image {image} to be image {image} with the box of image perm[{image}] pasted in, "
             f"got pixels that differ by up to {float((got[0] - want[0]).abs().max()):.3g}")
    sums = got[1].sum(dim=-1)
    if not close(sums, torch.ones_like(sums)):
        fail(f"{where}: expected every target row to sum to 1, got row sums {first_values(sums)}: "
             f"(1 - a) * onehot(labels) + a * onehot(labels[perm])")
    fail(f"{where}: expected targets {first_values(want[1])}, got {first_values(got[1])}: "
         f"(1 - a) * onehot(labels) + a * onehot(labels[perm]), a = clipped box area / (H * W)")


def _cutmix_cases() -> list[tuple]:
    """A box inside (with a rolled pairing), one past two edges of a non-square image, one of zero area."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.rand(4, 1, 8, 8, generator=gen), torch.tensor([3, 1, 4, 1]), torch.arange(4).roll(1), (2, 3, 4, 2), 5),
            (torch.rand(5, 3, 8, 10, generator=gen), torch.randint(0, 10, (5,), generator=gen),
             torch.tensor([2, 0, 4, 1, 3]), (5, 6, 6, 5), 10),
            (torch.rand(3, 1, 6, 6, generator=gen), torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1]), (2, 1, 0, 3), 3)]


@checker("cutmix")
def check_cutmix(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Check ``fn(images, labels, perm, box, num_classes)`` -> ``(mixed [N, C, H, W], targets [N, num_classes])``
    on a box inside, a box past the edges and a zero-area box, and that ``images`` is left unchanged."""
    for case in _cutmix_cases():
        images, labels, perm, box, classes = case
        where = f"cutmix(images {list(images.shape)}, labels, perm, box={box}, num_classes={classes})"
        given = images.clone()
        got = call_learner(fn, "cutmix", given, labels.clone(), perm.clone(), box, classes)
        if not torch.equal(given, images):
            fail(f"{where}: expected the images left as they were, got {int((given != images).sum())} of their values "
                 f"changed in place: the caller's batch is not yours to edit; paste into a copy (images.clone())")
        want = cutmix(*case)
        mixed, targets = _pair(got, where, (list(want[0].shape), list(want[1].shape)))
        judge(where, (mixed, targets), want, CUTMIX_MISTAKES, case, found=lambda m: f"{where}: expected the CutMix of the given perm and box, got another one: {m}",
              differs=lambda: _cutmix_differs(where, (mixed, targets), want))
    return passed("cutmix", "the box of image perm[i] pasted into image i, clipped at the edges; the targets mixed "
                            "by the area pasted; the input left unchanged")
