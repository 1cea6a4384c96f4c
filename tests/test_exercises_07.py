"""The exercise checkers of notebook 07 accept the reference solutions and reject the usual mistakes.

Every rejection must say what was expected and what came back, and name the mistake. The
reference solutions are written from the paper / official code, independently of the package,
as the notebook's reference cells are.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import accepts, rejects  # noqa: E402

from mae_lesson.classifier import layer_decay_scales
from mae_lesson.exercises import ExerciseError
from mae_lesson.exercises.finetune_loop import _loop_variant
from mae_lesson.exercises.finetuning import (
    check_classifier_head,
    check_finetune_steps,
    check_knn,
    check_layer_decay_scales,
    check_linear_probe,
    check_mean_pool,
)
from mae_lesson.exercises.probe import _probe_variant


def crashing(*args):
    raise RuntimeError("shape mismatch")


def stub(*args):
    """An untouched exercise stub: its body is ``...``."""


# --------------------------------------------------------------------------- 07 fine-tuning
def mean_pool_ok(latent):
    return latent[:, 1:, :].mean(dim=1)


def knn_ok(train_x, train_y, test_x, k, temperature):
    sims = F.normalize(test_x, dim=1) @ F.normalize(train_x, dim=1).T  # cosine similarity [n, N]
    top_sim, top_idx = sims.topk(k, dim=1)
    votes = torch.zeros(len(test_x), int(train_y.max()) + 1)
    votes.scatter_add_(1, train_y[top_idx], torch.exp(top_sim / temperature))
    return votes.argmax(dim=1)


def test_mean_pool_accepts_reference(capsys):
    accepts(check_mean_pool, mean_pool_ok, capsys)
    accepts(check_mean_pool, lambda z: z[:, 1:].sum(1) / (z.shape[1] - 1), capsys)


@pytest.mark.parametrize("fn, phrases", [
    (lambda z: z.mean(dim=1), ["cls token included", "latent[:, 1:]"]),
    (lambda z: z[:, 0], ["the cls token itself"]),
    (lambda z: z[:, :-1].mean(dim=1), ["drops the last"]),
    (lambda z: z[:, 1:].sum(dim=1), ["sum of the patch tokens"]),
    (lambda z: z[:, 1:].amax(dim=1), ["max pooling"]),
    (lambda z: z.mean(dim=-1), ["width D", "dim=1"]),
    (lambda z: z[:, 1:].mean(dim=1, keepdim=True), ["keepdim"]),
    (lambda z: z[:, 1:].mean(dim=1) * 1.1, ["values differ"]),
])
def test_mean_pool_rejects_mistakes(fn, phrases):
    rejects(check_mean_pool, fn, *phrases)


def test_knn_accepts_reference(capsys):
    accepts(check_knn, knn_ok, capsys)


def _knn_variant(change):
    def fn(train_x, train_y, test_x, k, t):
        classes = int(train_y.max()) + 1
        if change.startswith("euclid"):
            d = torch.cdist(test_x, train_x)
            val, idx = d.topk(k, dim=1, largest=False)
            w = torch.ones_like(val) if change == "euclid_majority" else torch.exp(-val / t)
        elif change == "dot":
            val, idx = (test_x @ train_x.T).topk(k, dim=1)
            w = torch.ones_like(val)
        else:
            sims = F.normalize(test_x, dim=1) @ F.normalize(train_x, dim=1).T
            val, idx = sims.topk(k, dim=1, largest=change != "least")
            w = {"majority": torch.ones_like(val), "linear": val}.get(change, torch.exp(val / t))
        votes = torch.zeros(len(test_x), classes).scatter_add_(1, train_y[idx], w)
        if change == "accuracy":
            return votes.argmax(1).float().mean()
        return votes.argmax(1)
    return fn


@pytest.mark.parametrize("change, phrases", [
    ("euclid_majority", ["euclidean", "cosine similarity"]),
    ("euclid_weighted", ["euclidean", "F.normalize"]),
    ("dot", ["raw dot product"]),
    ("majority", ["unweighted majority vote", "exp(similarity / temperature)"]),
    ("linear", ["weighted by the similarity itself"]),
    ("least", ["least"]),
    ("accuracy", ["not the accuracy"]),
])
def test_knn_rejects_mistakes(change, phrases):
    rejects(check_knn, _knn_variant(change), *phrases)


def test_knn_rejects_crash_and_shape():
    rejects(check_knn, crashing, "raised RuntimeError")
    rejects(check_knn, lambda a, b, c, k, t: knn_ok(a, b, c, k, t)[:-1], "shape")


# ------------------------------------------------------------------ not attempted (the stub)
@pytest.mark.parametrize("checker, name", [
    (check_mean_pool, "mean_pool"), (check_knn, "knn"), (check_linear_probe, "linear_probe"),
    (check_classifier_head, "classifier_head"), (check_layer_decay_scales, "layer_decay_scales"),
    (check_finetune_steps, "finetune_steps"),
])
def test_untouched_stub_is_not_attempted(checker, name, capsys):
    assert checker(stub) is False
    assert capsys.readouterr().out.strip() == f"Not attempted yet: write my_{name} above, or open the reference solution below."


# ------------------------------------------------------------------------------ linear probe
def probe_ok(train_x, train_y, test_x, epochs, batch_size, lr, seed):
    """The paper's probe written out: BatchNorm without affine, a linear layer, AdamW, cosine."""
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    probe = nn.Sequential(nn.BatchNorm1d(train_x.shape[1], affine=False, eps=1e-6),
                          nn.Linear(train_x.shape[1], int(train_y.max()) + 1))
    nn.init.trunc_normal_(probe[1].weight, std=0.01)
    nn.init.zeros_(probe[1].bias)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * math.ceil(len(train_x) / batch_size))
    for _ in range(epochs):
        for ids in torch.randperm(len(train_x), generator=shuffle).split(batch_size):
            loss = F.cross_entropy(probe(train_x[ids]), train_y[ids])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    probe.eval()
    with torch.no_grad():
        return probe(test_x).argmax(dim=1)


def test_linear_probe_accepts_reference(capsys):
    accepts(check_linear_probe, probe_ok, capsys)


def loader_probe(shuffle_seed: int, affine: bool = False):
    """The recipe written with a DataLoader: the same initialisation, the data in another order."""
    def probe_fn(train_x, train_y, test_x, epochs, batch_size, lr, seed):
        torch.manual_seed(seed)
        probe = torch.nn.Sequential(torch.nn.BatchNorm1d(train_x.shape[1], affine=affine, eps=1e-6),
                                    torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1))
        torch.nn.init.trunc_normal_(probe[1].weight, std=0.01)
        torch.nn.init.zeros_(probe[1].bias)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y), batch_size=batch_size,
                                             shuffle=True, generator=torch.Generator().manual_seed(shuffle_seed))
        optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
        for _ in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                F.cross_entropy(probe(x), y).backward()
                optimizer.step()
                schedule.step()
        probe.eval()
        with torch.no_grad():
            return probe(test_x).argmax(dim=1)
    return probe_fn


@pytest.mark.parametrize("shuffle_seed", range(6))
def test_linear_probe_accepts_any_data_order(shuffle_seed, capsys):
    """A correct probe passes whatever order its DataLoader draws (it failed 6 times in 20 seeds before)."""
    accepts(check_linear_probe, loader_probe(shuffle_seed), capsys)


@pytest.mark.parametrize("shuffle_seed", range(6))
def test_linear_probe_rejects_an_affine_batchnorm_whatever_the_order(shuffle_seed):
    """An affine BatchNorm written with a DataLoader was accepted 9 times in 20 seeds before."""
    rejects(check_linear_probe, loader_probe(shuffle_seed, affine=True), "affine=True")


def test_linear_probe_names_the_same_order_every_epoch():
    rejects(check_linear_probe, lambda *args: _probe_variant(*args, change="no_shuffle"), "the same order every epoch")


@pytest.mark.parametrize("change, phrases", [
    ("no_norm", ["no BatchNorm"]),
    ("affine", ["affine=True"]),
    ("train_mode", ["probe.eval()"]),
    ("no_schedule", ["constant learning rate"]),
])
def test_linear_probe_rejects_mistakes(change, phrases):
    rejects(check_linear_probe, lambda *args: _probe_variant(*args, change=change), *phrases)


def test_linear_probe_rejects_accuracy_and_logits():
    rejects(check_linear_probe, lambda *args: (probe_ok(*args) == 0).float().mean(), "not the accuracy")
    rejects(check_linear_probe, lambda *args: F.one_hot(probe_ok(*args), 4).float(), "argmax")
    rejects(check_linear_probe, lambda tx, ty, sx, *rest: torch.zeros(len(sx), dtype=torch.long), "test features differ")


# ----------------------------------------------------------------------------- classifier head
def test_classifier_head_accepts_reference(capsys):
    accepts(check_classifier_head, lambda x, norm, head: head(norm(x[:, 1:].mean(dim=1))), capsys)


@pytest.mark.parametrize("fn, phrases", [
    (lambda x, norm, head: head(norm(x.mean(dim=1))), ["cls token included"]),
    (lambda x, norm, head: head(norm(x[:, 0])), ["the cls token instead"]),
    (lambda x, norm, head: head(norm(x[:, 1:]).mean(dim=1)), ["before pooling"]),
    (lambda x, norm, head: head(x[:, 1:].mean(dim=1)), ["no fc_norm"]),
    (lambda x, norm, head: head(norm(x[:, 1:].mean(dim=1))).softmax(dim=-1), ["return the logits"]),
    (lambda x, norm, head: head(norm(x[:, 2:].mean(dim=1))), ["values differ"]),
    (lambda x, norm, head: norm(x[:, 1:].mean(dim=1)), ["shape"]),
])
def test_classifier_head_rejects_mistakes(fn, phrases):
    rejects(check_classifier_head, fn, *phrases)


# -------------------------------------------------------------------------- layer-wise lr decay
def _decay_with(block_shift=1, power="top", head_layer=None, one_digit=False):
    def fn(model, decay):
        depth = len(model.blocks)
        out = {}
        for name, _ in model.named_parameters():
            if name.startswith(("cls_token", "pos_embed", "patch_embed")):
                layer = 0
            elif name.startswith("blocks."):
                layer = (int(name[7]) if one_digit else int(name.split(".")[1])) + block_shift
            else:
                layer = depth + 1 if head_layer is None else head_layer(depth)
            out[name] = decay ** (depth + 1 - layer if power == "top" else layer)
        return out
    return fn


decay_ok = _decay_with()  # the right answer: blocks.i is layer i + 1, decay from the top


def test_layer_decay_accepts_reference(capsys):
    accepts(check_layer_decay_scales, decay_ok, capsys)
    accepts(check_layer_decay_scales, layer_decay_scales, capsys)


@pytest.mark.parametrize("fn, phrases", [
    (_decay_with(block_shift=0), ["blocks numbered from 0", "layer i + 1"]),
    (_decay_with(power="bottom"), ["wrong end"]),
    (_decay_with(head_layer=lambda depth: depth), ["layer depth + 1"]),
    (_decay_with(one_digit=True), ["blocks.10"]),
    (lambda model, decay: {k: v for k, v in decay_ok(model, decay).items() if "head" not in k}, ["missing", "head"]),
    (lambda model, decay: [decay_ok(model, decay)], ["expected a dict"]),
    (lambda model, decay: {k: v * 0.5 if k == "fc_norm.bias" else v for k, v in decay_ok(model, decay).items()},
     ["fc_norm.bias"]),
])
def test_layer_decay_rejects_mistakes(fn, phrases):
    rejects(check_layer_decay_scales, fn, *phrases)


# ----------------------------------------------------------------------------- fine-tuning loop
def loop_ok(model, loader, optimizer, schedule, steps, label_smoothing):
    return _loop_variant(model, loader, optimizer, schedule, steps, label_smoothing, change="none")


def test_finetune_steps_accepts_reference(capsys):
    accepts(check_finetune_steps, loop_ok, capsys)


def test_finetune_steps_accepts_the_packages_soft_target_loss(capsys):
    """The package's way of writing the smoothed loss (sum of -target * log_softmax) passes too."""
    def soft_targets(model, loader, optimizer, schedule, steps, label_smoothing):
        losses = []
        for step in range(steps):
            loader.set_epoch(step // len(loader))
            imgs, labels, _ = loader.batch(step % len(loader))
            logits = model(imgs)
            target = F.one_hot(labels, logits.shape[1]).float() * (1 - label_smoothing) + label_smoothing / logits.shape[1]
            loss = torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        return losses
    accepts(check_finetune_steps, soft_targets, capsys)


@pytest.mark.parametrize("change, phrases", [
    ("no_zero_grad", ["zero_grad"]),
    ("no_schedule", ["got the starting weights", "schedule.step()"]),
    ("no_set_epoch", ["set_epoch"]),
    ("no_smoothing", ["label smoothing"]),
])
def test_finetune_steps_rejects_mistakes(change, phrases):
    rejects(check_finetune_steps, lambda *args: _loop_variant(*args, change=change), *phrases)


def test_finetune_steps_rejects_wrong_return():
    rejects(check_finetune_steps, lambda *args: loop_ok(*args)[:-1], "list of")


def test_finetune_steps_checks_the_returned_losses():
    """Right weights but the losses nudged (found by the three-way notebook run): was 'Correct', now named."""
    rejects(check_finetune_steps, lambda *args: [v + 0.5 for v in loop_ok(*args)], "the loss of each step",
            "loss.item() of every step")
