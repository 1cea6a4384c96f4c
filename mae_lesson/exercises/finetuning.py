"""Checkers for notebook 07 (fine-tuning and evaluation).

Each checker compares the learner's function with the package's own:

- ``mean_pool``: the ``mean`` pool of :func:`mae_lesson.evaluate.extract_features` (average of the
  patch tokens, the cls token left out);
- ``knn``: :func:`mae_lesson.evaluate.knn_classify` (cosine similarity, the k most similar training
  images vote with weight ``exp(sim / T)``);
- ``linear_probe``: :func:`mae_lesson.evaluate.linear_probe` with the same seed (BatchNorm without
  affine, a linear layer, AdamW and a cosine schedule on cached features);
- ``classifier_head``: the last steps of :class:`mae_lesson.classifier.ViTClassifier` (mean of the
  patch tokens, ``fc_norm``, ``head``) on the same weights;
- ``layer_decay_scales``: :func:`mae_lesson.classifier.layer_decay_scales`;
- ``finetune_steps``: the training loop of :func:`mae_lesson.finetune.finetune`, started from the
  same set-up (:func:`finetune_setup`) and compared weight by weight after the same steps.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..classifier import ViTClassifier, layer_decay_scales
from ..config import Config
from ..data import ImageData
from ..evaluate import knn_classify, linear_probe
from ..finetune import FinetuneArgs, finetune, finetune_setup
from ..model import MAE
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import diagnose, expect_close, expect_shape, same

# A small encoder, so that every checker runs in seconds on a CPU.
CHECK_CONFIG = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "encoder_depth": 2,
                "encoder_num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2,
                "norm_mean": [0.5], "norm_std": [0.25]}


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the checkers' small training loops on one thread: tensors of a few hundred numbers gain
    nothing from more, and on a busy machine extra threads spin waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- linear probe
def _probe_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features on wildly different scales and offsets (BatchNorm matters), and a test set whose
    class mix differs from the training set's (so its own batch statistics would mislead)."""
    gen = torch.Generator().manual_seed(seed)
    classes, dim = 4, 16
    centres = torch.randn(classes, dim, generator=gen) * 0.5  # classes overlap
    scale = torch.exp(torch.randn(dim, generator=gen) * 1.5)
    offset = torch.randn(dim, generator=gen) * 5

    def draw(y: torch.Tensor) -> torch.Tensor:
        return (centres[y] + torch.randn(len(y), dim, generator=gen)) * scale + offset

    train_y = torch.arange(classes).repeat(150)
    test_y = torch.cat([torch.zeros(150, dtype=torch.long), torch.arange(1, classes).repeat(20)])
    return draw(train_y), train_y, draw(test_y), test_y


def _probe_variant(train_x, train_y, test_x, epochs, batch_size, lr, seed, change: str) -> torch.Tensor:
    """``linear_probe``'s recipe with one usual mistake (``change``)."""
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    dim, classes = train_x.shape[1], int(train_y.max()) + 1
    layers = [] if change == "no_norm" else [nn.BatchNorm1d(dim, affine=change == "affine", eps=1e-6)]
    probe = nn.Sequential(*layers, nn.Linear(dim, classes))
    nn.init.trunc_normal_(probe[-1].weight, std=0.01)
    nn.init.zeros_(probe[-1].bias)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    probe.train()
    for _ in range(epochs):
        order = torch.arange(len(train_x)) if change == "no_shuffle" else torch.randperm(len(train_x), generator=shuffle)
        for ids in order.split(batch_size):
            loss = F.cross_entropy(probe(train_x[ids]), train_y[ids])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if change != "no_schedule":
                schedule.step()
    if change != "train_mode":
        probe.eval()
    with torch.no_grad():
        return probe(test_x).argmax(dim=1)


PROBE_MISTAKES = {
    "no_norm": "no BatchNorm before the linear layer: the features have very different scales; put "
               "nn.BatchNorm1d(D, affine=False, eps=1e-6) first",
    "affine": "BatchNorm with a learnable scale and shift (affine=True): the paper's probe normalises only, "
              "nn.BatchNorm1d(D, affine=False, eps=1e-6), so that the linear layer is all that learns",
    "train_mode": "the probe still in training mode at test time: BatchNorm then normalises with the test "
                  "batch's own statistics; call probe.eval() before predicting, so it uses the running "
                  "statistics of the training features",
    "no_shuffle": "the same order of training features in every epoch: draw torch.randperm(N, generator=...) "
                  "once per epoch",
    "no_schedule": "a constant learning rate: step the CosineAnnealingLR(optimizer, T_max=total steps) after "
                   "every optimizer step",
}
# The check trains on the whole training set as one batch (batch_size = N): whatever order a
# correct probe draws its data in (randperm, a DataLoader, none), its one batch per epoch holds
# the same features, so every correct probe makes the same predictions up to float rounding.
# That allows a deterministic bound: all but PROBE_MAX_DIFFERENT test points the same.
PROBE_SETTINGS = {"epochs": 40, "lr": 3e-2, "seed": 0}
PROBE_MAX_DIFFERENT = 2
# A second, mini-batch run only to name one mistake no full batch can show: the same order every epoch.
SHUFFLE_SETTINGS = {"epochs": 4, "batch_size": 64, "lr": 1e-2, "seed": 0}


@contextlib.contextmanager
def _batchnorms_built() -> Iterator[list[nn.BatchNorm1d]]:
    """Record every ``nn.BatchNorm1d`` built inside the block (the learner's probe, if it uses one)."""
    built: list[nn.BatchNorm1d] = []
    original = nn.BatchNorm1d.__init__

    def record(self: nn.BatchNorm1d, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    nn.BatchNorm1d.__init__ = record  # type: ignore[method-assign]
    try:
        yield built
    finally:
        nn.BatchNorm1d.__init__ = original  # type: ignore[method-assign]


@checker("linear_probe")
def check_linear_probe(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(train_x, train_y, test_x, epochs, batch_size, lr, seed)`` -> predictions ``[N_test]``."""
    with _one_thread():
        return _check_linear_probe(fn)


def _check_linear_probe(fn: Callable[..., torch.Tensor]) -> bool:
    train_x, train_y, test_x, test_y = _probe_data()
    settings = {"epochs": PROBE_SETTINGS["epochs"], "batch_size": len(train_x), "lr": PROBE_SETTINGS["lr"],
                "seed": PROBE_SETTINGS["seed"]}  # the call's positional order
    expected = linear_probe(train_x, train_y, test_x, test_y, weight_decay=0.0, **settings)["predictions"]
    where = (f"linear_probe(train_x {list(train_x.shape)}, train_y, test_x {list(test_x.shape)}, "
             + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")")
    with _batchnorms_built() as norms:
        got = call_learner(fn, "linear_probe", train_x.clone(), train_y.clone(), test_x.clone(), *settings.values())
    if isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
        raise ExerciseError(f"{where}: expected the predicted classes, a tensor of shape {[len(test_x)]}, got a single "
                            f"number ({got}): return the predictions, not the accuracy")
    if isinstance(got, torch.Tensor) and list(got.shape) == [len(test_x), 4]:
        raise ExerciseError(f"{where}: expected the predicted classes, shape {[len(test_x)]}, got the logits "
                            f"{list(got.shape)}: take .argmax(dim=1)")
    expect_shape(where, got, [len(test_x)], hint="one predicted class per test feature")
    if got.dtype.is_floating_point or got.dtype == torch.bool:
        raise ExerciseError(f"{where}: expected integer class indices (torch.long), got dtype {got.dtype}: "
                            f"argmax(dim=1) returns them")
    got = got.long()
    if any(norm.affine for norm in norms):
        raise ExerciseError(f"{where}: expected BatchNorm1d(D, affine=False), got a BatchNorm1d with affine=True. "
                            f"You trained {PROBE_MISTAKES['affine']}")
    different = int((got != expected).sum())
    if different > PROBE_MAX_DIFFERENT:
        for change, message in PROBE_MISTAKES.items():
            if change != "no_shuffle" and torch.equal(got, _probe_variant(train_x, train_y, test_x, *settings.values(),
                                                                         change=change)):
                raise ExerciseError(f"{where}: expected predictions {expected[:10].tolist()}..., got "
                                    f"{got[:10].tolist()}... ({different} of {len(test_x)} test features differ). "
                                    f"You trained {message}")
        raise ExerciseError(
            f"{where}: expected predictions {expected[:10].tolist()}..., got {got[:10].tolist()}... ({different} of "
            f"{len(test_x)} test features differ; with the whole training set as one batch, the data order cannot "
            f"matter, so a probe of this recipe agrees on all of them): torch.manual_seed(seed); BatchNorm1d(D, "
            f"affine=False, eps=1e-6) then Linear(D, classes) with trunc_normal_(std=0.01) weights and zero bias; "
            f"AdamW(lr, weight_decay=0) with a cosine schedule stepped every batch; probe.eval() before predicting")
    minibatch = call_learner(fn, "linear_probe", train_x.clone(), train_y.clone(), test_x.clone(),
                             *SHUFFLE_SETTINGS.values())
    want = linear_probe(train_x, train_y, test_x, test_y, weight_decay=0.0, **SHUFFLE_SETTINGS)["predictions"]
    if (isinstance(minibatch, torch.Tensor) and not torch.equal(minibatch.long(), want) and torch.equal(
            minibatch.long(), _probe_variant(train_x, train_y, test_x, *SHUFFLE_SETTINGS.values(), change="no_shuffle"))):
        where = where.split(", epochs=")[0] + ", " + ", ".join(f"{k}={v}" for k, v in SHUFFLE_SETTINGS.items()) + ")"
        raise ExerciseError(f"{where}: expected a new order of the training "
                            f"features each epoch, got the same order every epoch: {PROBE_MISTAKES['no_shuffle']}")
    return passed("linear_probe", "the same predictions as mae_lesson.evaluate.linear_probe on the full-batch set"
                                  + (f" (all but {different} of {len(test_x)} test features, float rounding)"
                                     if different else ""))


# ------------------------------------------------------------------------------ classifier head
def _check_classifier(seed: int = 0) -> ViTClassifier:
    """A small classifier whose ``fc_norm`` and ``head`` are far from their initial values, so each counts."""
    torch.manual_seed(seed)
    model = ViTClassifier(Config(CHECK_CONFIG), num_classes=5, drop_path=0.0).eval()
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


@checker("classifier_head")
def check_classifier_head(fn: Callable[[torch.Tensor, nn.Module, nn.Module], torch.Tensor]) -> bool:
    """Check ``fn(x, fc_norm, head)``: the last block's output ``[N, 1 + L, D]`` -> logits ``[N, classes]``."""
    model = _check_classifier()
    imgs = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    x, expected = _last_block_output(model, imgs)
    fc_norm, head = model.fc_norm, model.head
    where = f"classifier_head(x {list(x.shape)}, fc_norm, head)"
    got = call_learner(fn, "classifier_head", x.clone(), fc_norm, head, no_grad=True)
    expect_shape(where, got, list(expected.shape), hint="one row of class scores per image: head(fc_norm(pooled))")
    with torch.no_grad():
        mistakes = [
            (head(fc_norm(x.mean(dim=1))), ("the mean over all 1 + L tokens, the cls token included: pool the patch "
                                            "tokens x[:, 1:] only")),
            (head(fc_norm(x[:, 0])), ("the cls token instead of the mean of the patch tokens (the official fine-tuning "
                                     "uses global pooling): x[:, 1:].mean(dim=1)")),
            (head(fc_norm(x[:, 1:]).mean(dim=1)), ("fc_norm applied to every token before pooling: pool first, then "
                                                  "fc_norm the [N, D] mean")),
            (head(x[:, 1:].mean(dim=1)), "no fc_norm: apply fc_norm to the pooled [N, D] features before the head"),
            (head(fc_norm(x[:, 1:].sum(dim=1))), "the sum of the patch tokens: take their mean"),
            (expected.softmax(dim=-1), "probabilities (a softmax): return the logits, the loss applies the softmax"),
        ]
    diagnose(where, got, expected, mistakes, hint="head(fc_norm(x[:, 1:].mean(dim=1)))")
    return passed("classifier_head", "mean of the patch tokens, fc_norm, head: equal to ViTClassifier's logits")


# ---------------------------------------------------------------------------- layer-wise lr decay
def _decay_variants(model: nn.Module, decay: float) -> list[tuple[dict[str, float], str]]:
    depth = len(model.blocks)

    def scales(layer_of: Callable[[str], int], power: Callable[[int], int]) -> dict[str, float]:
        return {name: decay ** power(layer_of(name)) for name, _ in model.named_parameters()}

    def layer(name: str, block_shift: int = 1, head: int = depth + 1) -> int:
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + block_shift
        return head

    def first_digit(name: str) -> int:
        return int(name[len("blocks.")]) + 1 if name.startswith("blocks.") else layer(name)

    return [
        (scales(lambda n: layer(n, block_shift=0), lambda i: depth + 1 - i),
         ("blocks numbered from 0 (block i as layer i), so block 0 decays as much as the embeddings: the "
         "embeddings are layer 0, block i is layer i + 1")),
        (scales(layer, lambda i: i),
         ("the decay on the wrong end: decay ** layer_id gives the embeddings the full learning rate and the "
         "head the smallest; use decay ** (depth + 1 - layer_id), so the layers nearest the input move least")),
        (scales(lambda n: layer(n, block_shift=0), lambda i: i),
         ("the decay on the wrong end and blocks numbered from 0: use decay ** (depth + 1 - layer_id) with "
         "block i as layer i + 1")),
        (scales(lambda n: layer(n, head=depth), lambda i: depth + 1 - i),
         "fc_norm and head as layer depth (like the last block): they are new, layer depth + 1, scale 1"),
        (scales(layer, lambda i: depth - i),
         "the exponent depth - layer_id: it is depth + 1 - layer_id (the head gets scale 1, the last block decay)"),
        (scales(first_digit, lambda i: depth + 1 - i),
         ("the block number read from one character of the name: blocks.10 is block 10, not block 1; "
         "take int(name.split('.')[1])")),
    ]


@checker("layer_decay_scales")
def check_layer_decay_scales(fn: Callable[[nn.Module, float], dict[str, float]]) -> bool:
    """Check ``fn(model, decay)`` -> ``{parameter name: lr multiplier}`` against ``layer_decay_scales``."""
    for depth, decay in ((3, 0.75), (12, 0.65)):  # 12 blocks: names blocks.10 and blocks.11 too
        torch.manual_seed(0)
        model = ViTClassifier(Config({**CHECK_CONFIG, "encoder_depth": depth}), num_classes=3, drop_path=0.0)
        expected = layer_decay_scales(model, decay)
        where = f"layer_decay_scales(ViTClassifier with {depth} blocks, decay={decay})"
        got = call_learner(fn, "layer_decay_scales", model, decay)
        if not isinstance(got, dict):
            raise ExerciseError(f"{where}: expected a dict {{parameter name: lr multiplier}}, got {type(got).__name__}")
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            raise ExerciseError(f"{where}: expected one entry per model.named_parameters() name ({len(expected)}), got "
                                f"{len(got)}" + (f"; missing {missing[:4]}" if missing else "")
                                + (f"; unknown {extra[:4]}" if extra else ""))
        wrong = [k for k in expected if not math.isclose(float(got[k]), expected[k], rel_tol=1e-6)]
        if not wrong:
            continue
        for variant, message in _decay_variants(model, decay):
            if all(math.isclose(float(got[k]), variant[k], rel_tol=1e-6) for k in expected):
                raise ExerciseError(f"{where}: expected {wrong[0]} -> {expected[wrong[0]]:.4g}, got {float(got[wrong[0]]):.4g}. "
                                    f"You used {message}")
        first = wrong[0]
        raise ExerciseError(f"{where}: expected {first} -> {expected[first]:.4g}, got {float(got[first]):.4g} "
                            f"({len(wrong)} of {len(expected)} parameters differ): cls_token, pos_embed and "
                            f"patch_embed are layer 0, blocks.i layer i + 1, everything after the blocks layer "
                            f"depth + 1; the scale is decay ** (depth + 1 - layer)")
    return passed("layer_decay_scales", "embeddings layer 0, block i layer i + 1, head depth + 1; "
                                        "decay ** (depth + 1 - layer), equal to layer_decay_scales")


# -------------------------------------------------------------------------------- fine-tuning loop
def _check_data(count: int, seed: int) -> ImageData:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    images = torch.randint(0, 80, (count, 1, 16, 16), generator=gen, dtype=torch.uint8)
    for c in range(3):  # each class brightens its own band of rows, so there is something to learn
        images[labels == c, :, 5 * c:5 * c + 5] += 150
    return ImageData(images, labels, ("a", "b", "c"), (0.5,), (0.25,))


def _loop_variant(model, loader, optimizer, schedule, steps, label_smoothing, change: str) -> list[float]:
    """The fine-tuning loop with one usual mistake (``change``)."""
    losses = []
    model.train()
    for step in range(steps):
        if change != "no_set_epoch":
            loader.set_epoch(step // len(loader))
        imgs, labels, _ = loader.batch(step % len(loader))
        loss = F.cross_entropy(model(imgs), labels, label_smoothing=0.0 if change == "no_smoothing" else label_smoothing)
        if change != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if change == "schedule_first":
            schedule.step()
        optimizer.step()
        if change not in ("schedule_first", "no_schedule"):
            schedule.step()
        losses.append(loss.item())
    return losses


LOOP_MISTAKES = {
    "no_zero_grad": "no optimizer.zero_grad(): gradients add up over the steps; clear them before backward()",
    "no_schedule": "no schedule.step(): the learning rate stays where the warm-up starts, at 0; call "
                   "schedule.step() after every optimizer.step()",
    "schedule_first": "schedule.step() before optimizer.step(): every step uses the next step's learning rate; "
                      "step the optimizer first",
    "no_set_epoch": "no loader.set_epoch(step // len(loader)): every epoch repeats the first epoch's order",
    "no_smoothing": "no label smoothing: F.cross_entropy(logits, labels, label_smoothing=label_smoothing)",
}
# The package writes the smoothed cross-entropy as sum(-target * log_softmax); F.cross_entropy with
# label_smoothing computes the same value in another order, so weights agree to float rounding only.
LOOP_ATOL = 1e-5


def _max_difference(a: nn.Module, b: nn.Module) -> tuple[float, str]:
    diffs = {k: float((v.float() - b.state_dict()[k].float()).abs().max()) for k, v in a.state_dict().items()}
    name = max(diffs, key=diffs.get)
    return diffs[name], name


@checker("finetune_steps")
def check_finetune_steps(fn: Callable[..., list[float]]) -> bool:
    """Check ``fn(model, loader, optimizer, schedule, steps, label_smoothing)`` -> losses, against ``finetune``.

    Runs :func:`mae_lesson.finetune.finetune` on a small model for two epochs, then the learner's
    loop from the same set-up, and compares the weights after the last step.
    """
    with _one_thread():
        return _check_finetune_steps(fn)


def _check_finetune_steps(fn: Callable[..., list[float]]) -> bool:
    torch.manual_seed(0)
    mae = MAE(CHECK_CONFIG)
    train, test = _check_data(48, 0), _check_data(12, 1)
    args = FinetuneArgs(epochs=2, max_steps=None, batch_size=16, blr=0.1, layer_decay=0.75, weight_decay=0.05,
                        drop_path=0.0, label_smoothing=0.1, mixup=0.0, warmup_epochs=0.5, crop_scale=0.8,
                        seed=0, device="cpu", progress=False, eval_every_epoch=False)
    expected = finetune(mae, train, test, args)["model"]
    model, loader, optimizer, schedule, total = finetune_setup(mae, train, args)
    start = copy.deepcopy(model)
    where = f"finetune_steps(ViTClassifier, BatchLoader of {len(loader)} batches, optimizer, schedule, steps={total}, label_smoothing=0.1)"
    losses = call_learner(fn, "finetune_steps", model, loader, optimizer, schedule, total, args.label_smoothing)
    if not isinstance(losses, (list, tuple)) or len(losses) != total or not all(isinstance(v, (float, int)) for v in losses):
        raise ExerciseError(f"{where}: expected a list of {total} losses (floats, loss.item()), got "
                            f"{type(losses).__name__}" + (f" of length {len(losses)}" if isinstance(losses, (list, tuple)) else ""))
    diff, name = _max_difference(model, expected)
    if diff <= LOOP_ATOL:
        fresh, loader_r, optimizer_r, schedule_r, _ = finetune_setup(mae, train, args)
        want = _loop_variant(fresh, loader_r, optimizer_r, schedule_r, total, args.label_smoothing, change="none")
        if not all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(losses, want)):
            raise ExerciseError(f"{where}: expected the loss of each step {[round(v, 4) for v in want[:4]]}..., got "
                                f"{[round(float(v), 4) for v in losses[:4]]}... (the weights are right): return "
                                f"loss.item() of every step, in order")
        return passed("finetune_steps", f"after {total} steps every weight equals finetune()'s within {LOOP_ATOL:g}, "
                                        f"the float rounding of the two ways to write the smoothed loss")
    if _max_difference(model, start)[0] == 0.0:
        raise ExerciseError(f"{where}: expected the weights to change (finetune() moves {name} by "
                            f"{_max_difference(expected, start)[0]:.3g}), got the starting weights: call "
                            f"optimizer.step() and schedule.step() every step (the warm-up starts at learning rate 0)")
    for change, message in LOOP_MISTAKES.items():
        variant, loader_v, optimizer_v, schedule_v, _ = finetune_setup(mae, train, args)
        _loop_variant(variant, loader_v, optimizer_v, schedule_v, total, args.label_smoothing, change)
        if _max_difference(model, variant)[0] <= LOOP_ATOL:
            raise ExerciseError(f"{where}: expected the weights finetune() reaches, got others ({name} differs by "
                                f"{diff:.3g}). You wrote {message}")
    raise ExerciseError(
        f"{where}: expected the weights finetune() reaches, got others ({name} differs by {diff:.3g}): per step "
        f"loader.set_epoch(step // len(loader)); imgs, labels, _ = loader.batch(step % len(loader)); "
        f"F.cross_entropy(model(imgs), labels, label_smoothing=...); zero_grad, backward, optimizer.step(), "
        f"schedule.step()")


# ------------------------------------------------------------------------------- mean pool
@checker("mean_pool")
def check_mean_pool(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(latent)``: ``[N, 1 + L, D]`` (cls first) -> ``[N, D]``, the mean of the L patch tokens."""
    gen = torch.Generator().manual_seed(0)
    for n, length, dim in ((4, 49, 16), (2, 9, 8)):
        latent = torch.randn(n, 1 + length, dim, generator=gen)
        latent[:, 0] += 5.0  # a cls token unlike the patches, so including it shows
        expected = latent[:, 1:].mean(dim=1)
        where = f"mean_pool(latent {[n, 1 + length, dim]})"
        got = call_learner(fn, "mean_pool", latent.clone())
        if isinstance(got, torch.Tensor) and list(got.shape) == [n, 1 + length]:
            raise ExerciseError(f"{where}: expected shape {[n, dim]}, got {list(got.shape)}: you averaged over the "
                                f"width D (dim=-1); average over the tokens (dim=1)")
        if isinstance(got, torch.Tensor) and list(got.shape) == [n, 1, dim]:
            raise ExerciseError(f"{where}: expected shape {[n, dim]}, got {list(got.shape)}: drop keepdim=True")
        expect_shape(where, got, [n, dim], hint="one D-dimensional feature per image")
        if same(got, expected):
            continue
        mistakes = [
            (latent.mean(dim=1), ("the mean over all 1 + L tokens, the cls token included: the cls token is "
                                 "latent[:, 0]; average the patch tokens latent[:, 1:]")),
            (latent[:, 0], "the cls token itself (that is the 'cls' feature); average the patch tokens latent[:, 1:]"),
            (latent[:, :-1].mean(dim=1), ("the mean of latent[:, :-1], which keeps the cls token and drops the last "
                                         "patch: the cls token comes first, so take latent[:, 1:]")),
            (latent[:, 1:].sum(dim=1), "the sum of the patch tokens: divide by L (use .mean(dim=1))"),
            (latent[:, 1:].amax(dim=1), "the maximum over the patch tokens (max pooling): take the mean"),
        ]
        for value, message in mistakes:
            if same(got, value):
                raise ExerciseError(f"{where}: expected the mean of the {length} patch tokens "
                                    f"(expected[0, :3] = {[round(v, 4) for v in expected[0, :3].tolist()]}), got {message} "
                                    f"(got[0, :3] = {[round(v, 4) for v in got[0, :3].tolist()]})")
        expect_close(where, got, expected, hint="latent[:, 1:].mean(dim=1)")
    return passed("mean_pool", "average of the patch tokens, cls token left out")


# -------------------------------------------------------------------------------------- kNN
def _knn_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overlapping classes whose feature norms vary a lot, so cosine and euclidean neighbours differ."""
    gen = torch.Generator().manual_seed(seed)
    classes, dim, per_class = 4, 12, 40
    centres = F.normalize(torch.randn(classes, dim, generator=gen), dim=1)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(classes).repeat_interleave(count)
        direction = F.normalize(centres[y] + 2.0 * torch.randn(len(y), dim, generator=gen) / dim**0.5, dim=1)
        norms = torch.exp(torch.randn(len(y), 1, generator=gen) * 1.2)  # lengths from about 0.1 to 10
        return direction * norms, y

    train_x, train_y = draw(per_class)
    test_x, _ = draw(15)
    return train_x, train_y, test_x


def _variants(train_x, train_y, test_x, k, t) -> list[tuple[torch.Tensor, str]]:
    classes = int(train_y.max()) + 1
    cos = F.normalize(test_x, dim=1) @ F.normalize(train_x, dim=1).T
    dist = torch.cdist(test_x, train_x)
    dot = test_x @ train_x.T

    def vote(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(idx), classes, dtype=weight.dtype).scatter_add_(1, train_y[idx], weight).argmax(1)

    near_e = dist.topk(k, dim=1, largest=False)
    top_c = cos.topk(k, dim=1)
    top_d = dot.topk(k, dim=1)
    low_c = cos.topk(k, dim=1, largest=False)
    return [
        (vote(near_e.indices, torch.ones_like(near_e.values)),
         ("euclidean distance (nearest by ||a - b||) with a plain majority vote: kNN on MAE features uses "
         "cosine similarity, F.normalize both sides and take the dot product")),
        (vote(near_e.indices, torch.exp(-near_e.values / t)),
         ("euclidean distance (nearest by ||a - b||): kNN on MAE features uses cosine similarity, "
         "F.normalize both sides and take the dot product")),
        (vote(near_e.indices, torch.exp(cos.gather(1, near_e.indices) / t)),
         ("euclidean nearest neighbours (weighted by cosine similarity): choose the neighbours by cosine "
         "similarity too")),
        (vote(top_d.indices, torch.ones_like(top_d.values)),
         ("the raw dot product (features not normalised), majority vote: normalise with F.normalize(x, dim=1) "
         "so the feature length does not decide who is near")),
        (vote(top_d.indices, torch.exp((top_d.values / t).clamp(max=80))),
         ("the raw dot product (features not normalised): normalise with F.normalize(x, dim=1) so the "
         "feature length does not decide who is near")),
        (vote(top_c.indices, torch.ones_like(top_c.values)),
         "an unweighted majority vote: each neighbour votes with weight exp(similarity / temperature)"),
        (vote(top_c.indices, top_c.values),
         "votes weighted by the similarity itself: weight them by exp(similarity / temperature)"),
        (vote(low_c.indices, torch.exp(low_c.values / t)),
         "the k *least* similar training images: take the k largest cosine similarities (topk(k, dim=1))"),
        (vote(top_c.indices[:, :1], torch.ones_like(top_c.values[:, :1])),
         "only the single nearest neighbour: let the k most similar images vote"),
    ]


@checker("knn")
def check_knn(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor]) -> bool:
    """Check ``fn(train_x, train_y, test_x, k, temperature)`` -> predicted labels ``[N_test]``."""
    for seed, k, t in ((0, 20, 0.07), (1, 10, 0.5)):
        train_x, train_y, test_x = _knn_data(seed)
        dummy = torch.zeros(len(test_x), dtype=torch.long)
        expected = knn_classify(train_x, train_y, test_x, dummy, k=k, temperature=t)["predictions"]
        where = f"knn(train_x {list(train_x.shape)}, train_y, test_x {list(test_x.shape)}, k={k}, temperature={t})"
        got = call_learner(fn, "knn", train_x.clone(), train_y.clone(), test_x.clone(), k, t)
        if isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
            raise ExerciseError(f"{where}: expected the predicted labels, a tensor of shape {[len(test_x)]}, got a "
                                f"single number ({got}): return the predictions, not the accuracy")
        expect_shape(where, got, [len(test_x)], hint="one predicted class per test image: votes.argmax(dim=1)")
        got = got.long()
        if torch.equal(got, expected):
            continue
        wrong = int((got != expected).sum())
        for value, message in _variants(train_x, train_y, test_x, k, t):
            if torch.equal(got, value):
                raise ExerciseError(f"{where}: expected predictions {expected[:12].tolist()}..., got "
                                    f"{got[:12].tolist()}... ({wrong} of {len(got)} differ). You used {message}")
        raise ExerciseError(
            f"{where}: expected predictions {expected[:12].tolist()}..., got {got[:12].tolist()}... ({wrong} of "
            f"{len(got)} differ): sims = F.normalize(test_x) @ F.normalize(train_x).T, take the top k, add "
            f"exp(sim / temperature) to each neighbour's class, predict the class with the largest total")
    return passed("knn", "cosine similarity, k nearest vote with weight exp(sim / T)")
