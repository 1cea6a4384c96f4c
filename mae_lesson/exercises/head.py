"""Checkers for notebook 07's classifier: ``classifier_head`` and ``layer_decay_scales``.

- ``classifier_head``: the last steps of :class:`mae_lesson.classifier.ViTClassifier` (mean of the
  patch tokens, ``fc_norm``, ``head``) on the same weights;
- ``layer_decay_scales``: :func:`mae_lesson.classifier.layer_decay_scales`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..classifier import ViTClassifier, layer_decay_scales
from ._feedback import call_learner, checker, passed
from ._judge import Mistake, fail, judge
from ._models import CHECK_CONFIG, tiny_classifier


# ------------------------------------------------------------------------------ classifier head
def _check_classifier(seed: int = 0) -> ViTClassifier:
    """A small classifier whose ``fc_norm`` and ``head`` are far from their initial values, so each counts."""
    model = tiny_classifier(seed, num_classes=5, **CHECK_CONFIG).eval()
    with torch.no_grad():
        model.cls_token.add_(3.0)  # a cls token unlike the patches, so including it shows
        model.fc_norm.weight.normal_(1.0, 0.5)
        model.fc_norm.bias.normal_(0.0, 0.5)
        model.head.weight.normal_(0.0, 0.5)
        model.head.bias.normal_(0.0, 0.5)
    return model


@torch.no_grad()
def _last_block_output(model: ViTClassifier, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last block's output ``[N, 1 + L, D]`` and the classifier's logits, from one forward pass."""
    seen: list[torch.Tensor] = []
    hook = model.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        logits = model(imgs)
    finally:
        hook.remove()
    return seen[0], logits


# The case: the last block's output x, the model's fc_norm and head, and the right logits.
HEAD_MISTAKES = (
    Mistake("cls_included", lambda c: c["head"](c["fc_norm"](c["x"].mean(dim=1))),
            "the mean over all 1 + L tokens, the cls token included: pool the patch tokens x[:, 1:] only"),
    Mistake("cls_token", lambda c: c["head"](c["fc_norm"](c["x"][:, 0])), "the cls token instead of the mean of the "
            "patch tokens (the official fine-tuning uses global pooling): x[:, 1:].mean(dim=1)"),
    Mistake("norm_before_pool", lambda c: c["head"](c["fc_norm"](c["x"][:, 1:]).mean(dim=1)),
            "fc_norm applied to every token before pooling: pool first, then fc_norm the [N, D] mean"),
    Mistake("no_fc_norm", lambda c: c["head"](c["x"][:, 1:].mean(dim=1)),
            "no fc_norm: apply fc_norm to the pooled [N, D] features before the head"),
    Mistake("sum", lambda c: c["head"](c["fc_norm"](c["x"][:, 1:].sum(dim=1))), "the sum of the patch tokens: take their mean"),
    Mistake("softmax", lambda c: c["expected"].softmax(dim=-1),
            "probabilities (a softmax): return the logits, the loss applies the softmax"),
)


@checker("classifier_head")
def check_classifier_head(fn: Callable[[torch.Tensor, nn.Module, nn.Module], torch.Tensor]) -> bool:
    """Check ``fn(x, fc_norm, head)``: the last block's output ``[N, 1 + L, D]`` -> logits ``[N, classes]``."""
    model = _check_classifier()
    imgs = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    x, expected = _last_block_output(model, imgs)
    where = f"classifier_head(x {list(x.shape)}, fc_norm, head)"
    got = call_learner(fn, "classifier_head", x.clone(), model.fc_norm, model.head, no_grad=True)
    with torch.no_grad():
        judge(where, got, expected, HEAD_MISTAKES, {"x": x, "fc_norm": model.fc_norm, "head": model.head, "expected": expected},
              atol=1e-5, rtol=1e-4, shape_hint="one row of class scores per image: head(fc_norm(pooled))",
              hint="head(fc_norm(x[:, 1:].mean(dim=1)))")
    return passed("classifier_head", "mean of the patch tokens, fc_norm, head: equal to ViTClassifier's logits")


# ---------------------------------------------------------------------------- layer-wise lr decay
def _layer(name: str, depth: int, block_shift: int = 1, head: int | None = None) -> int:
    """The layer id of a parameter: 0 for the embeddings, i + ``block_shift`` for block i, ``head`` after them."""
    if name.startswith(("cls_token", "pos_embed", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + block_shift
    return depth + 1 if head is None else head


def _first_digit(name: str, depth: int) -> int:
    return int(name[len("blocks.")]) + 1 if name.startswith("blocks.") else _layer(name, depth)


def _scales(layer_of: Callable[[str, int], int], power: Callable[[int, int], int]) -> Callable[[dict], dict[str, float]]:
    """A row's wrong answer: ``decay ** power(layer, depth)`` for every parameter of the case's model."""
    def scales(c: dict) -> dict[str, float]:
        depth = len(c["model"].blocks)
        return {name: c["decay"] ** power(layer_of(name, depth), depth) for name, _ in c["model"].named_parameters()}
    return scales


# The case: the model and decay.
DECAY_MISTAKES = (
    Mistake("blocks_from_0", _scales(lambda n, d: _layer(n, d, block_shift=0), lambda i, d: d + 1 - i),
            "blocks numbered from 0 (block i as layer i), so block 0 decays as much as the embeddings: the "
            "embeddings are layer 0, block i is layer i + 1"),
    Mistake("wrong_end", _scales(_layer, lambda i, d: i),
            "the decay on the wrong end: decay ** layer_id gives the embeddings the full learning rate and the "
            "head the smallest; use decay ** (depth + 1 - layer_id), so the layers nearest the input move least"),
    Mistake("wrong_end_from_0", _scales(lambda n, d: _layer(n, d, block_shift=0), lambda i, d: i),
            "the decay on the wrong end and blocks numbered from 0: use decay ** (depth + 1 - layer_id) with "
            "block i as layer i + 1"),
    Mistake("head_as_last_block", _scales(lambda n, d: _layer(n, d, head=d), lambda i, d: d + 1 - i),
            "fc_norm and head as layer depth (like the last block): they are new, layer depth + 1, scale 1"),
    Mistake("exponent_depth", _scales(_layer, lambda i, d: d - i),
            "the exponent depth - layer_id: it is depth + 1 - layer_id (the head gets scale 1, the last block decay)"),
    Mistake("first_digit", _scales(_first_digit, lambda i, d: d + 1 - i),
            "the block number read from one character of the name: blocks.10 is block 10, not block 1; "
            "take int(name.split('.')[1])"),
)


def _same_scales(got: dict, want: dict) -> bool:
    return all(math.isclose(float(got[k]), want[k], rel_tol=1e-6) for k in want)


@checker("layer_decay_scales")
def check_layer_decay_scales(fn: Callable[[nn.Module, float], dict[str, float]]) -> bool:
    """Check ``fn(model, decay)`` -> ``{parameter name: lr multiplier}`` against ``layer_decay_scales``."""
    for depth, decay in ((3, 0.75), (12, 0.65)):  # 12 blocks: names blocks.10 and blocks.11 too
        model = tiny_classifier(0, num_classes=3, **{**CHECK_CONFIG, "encoder_depth": depth})
        expected = layer_decay_scales(model, decay)
        where = f"layer_decay_scales(ViTClassifier with {depth} blocks, decay={decay})"
        got = call_learner(fn, "layer_decay_scales", model, decay)
        if not isinstance(got, dict):
            fail(f"{where}: expected a dict {{parameter name: lr multiplier}}, got {type(got).__name__}")
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            fail(f"{where}: expected one entry per model.named_parameters() name ({len(expected)}), got {len(got)}"
                 + (f"; missing {missing[:4]}" if missing else "") + (f"; unknown {extra[:4]}" if extra else ""))
        wrong = [k for k in expected if not math.isclose(float(got[k]), expected[k], rel_tol=1e-6)] or [""]
        said = f"{where}: expected {wrong[0]} -> {expected.get(wrong[0], 0):.4g}, got {float(got.get(wrong[0], 0)):.4g}"
        judge(where, got, expected, DECAY_MISTAKES, {"model": model, "decay": decay}, matches=_same_scales,
              found=lambda m: f"{said}. You used {m}", differs=lambda: fail(
                  f"{said} ({len(wrong)} of {len(expected)} parameters differ): cls_token, pos_embed and "
                  f"patch_embed are layer 0, blocks.i layer i + 1, everything after the blocks layer "
                  f"depth + 1; the scale is decay ** (depth + 1 - layer)"))
    return passed("layer_decay_scales", "embeddings layer 0, block i layer i + 1, head depth + 1; "
                                        "decay ** (depth + 1 - layer), equal to layer_decay_scales")
