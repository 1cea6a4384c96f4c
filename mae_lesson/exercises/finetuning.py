"""Checkers for notebook 07 (fine-tuning): mean-pooled features and the weighted kNN classifier.

References: the ``mean`` pool of :func:`mae_lesson.evaluate.extract_features` (average of the patch
tokens, the cls token left out) and :func:`mae_lesson.evaluate.knn_classify` (cosine similarity,
the k most similar training images vote with weight ``exp(sim / T)``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..evaluate import knn_classify
from ._feedback import ExerciseError, expect_close, expect_shape, passed, call_learner, same


_call = call_learner


def _same(value: Any, other: torch.Tensor) -> bool:
    return same(value, other, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- mean pool
def check_mean_pool(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(latent)``: ``[N, 1 + L, D]`` (cls first) -> ``[N, D]``, the mean of the L patch tokens."""
    gen = torch.Generator().manual_seed(0)
    for n, length, dim in ((4, 49, 16), (2, 9, 8)):
        latent = torch.randn(n, 1 + length, dim, generator=gen)
        latent[:, 0] += 5.0  # a cls token unlike the patches, so including it shows
        expected = latent[:, 1:].mean(dim=1)
        where = f"mean_pool(latent {[n, 1 + length, dim]})"
        got = _call(fn, "mean_pool", latent.clone())
        if isinstance(got, torch.Tensor) and list(got.shape) == [n, 1 + length]:
            raise ExerciseError(f"{where}: expected shape {[n, dim]}, got {list(got.shape)}: you averaged over the "
                                f"width D (dim=-1); average over the tokens (dim=1)")
        if isinstance(got, torch.Tensor) and list(got.shape) == [n, 1, dim]:
            raise ExerciseError(f"{where}: expected shape {[n, dim]}, got {list(got.shape)}: drop keepdim=True")
        expect_shape(where, got, [n, dim], hint="one D-dimensional feature per image")
        if _same(got, expected):
            continue
        mistakes = [
            (latent.mean(dim=1), "the mean over all 1 + L tokens, the cls token included: the cls token is "
                                 "latent[:, 0]; average the patch tokens latent[:, 1:]"),
            (latent[:, 0], "the cls token itself (that is the 'cls' feature); average the patch tokens latent[:, 1:]"),
            (latent[:, :-1].mean(dim=1), "the mean of latent[:, :-1], which keeps the cls token and drops the last "
                                         "patch: the cls token comes first, so take latent[:, 1:]"),
            (latent[:, 1:].sum(dim=1), "the sum of the patch tokens: divide by L (use .mean(dim=1))"),
            (latent[:, 1:].amax(dim=1), "the maximum over the patch tokens (max pooling): take the mean"),
        ]
        for value, message in mistakes:
            if _same(got, value):
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
         "euclidean distance (nearest by ||a - b||) with a plain majority vote: kNN on MAE features uses "
         "cosine similarity, F.normalize both sides and take the dot product"),
        (vote(near_e.indices, torch.exp(-near_e.values / t)),
         "euclidean distance (nearest by ||a - b||): kNN on MAE features uses cosine similarity, "
         "F.normalize both sides and take the dot product"),
        (vote(near_e.indices, torch.exp(cos.gather(1, near_e.indices) / t)),
         "euclidean nearest neighbours (weighted by cosine similarity): choose the neighbours by cosine "
         "similarity too"),
        (vote(top_d.indices, torch.ones_like(top_d.values)),
         "the raw dot product (features not normalised), majority vote: normalise with F.normalize(x, dim=1) "
         "so the feature length does not decide who is near"),
        (vote(top_d.indices, torch.exp((top_d.values / t).clamp(max=80))),
         "the raw dot product (features not normalised): normalise with F.normalize(x, dim=1) so the "
         "feature length does not decide who is near"),
        (vote(top_c.indices, torch.ones_like(top_c.values)),
         "an unweighted majority vote: each neighbour votes with weight exp(similarity / temperature)"),
        (vote(top_c.indices, top_c.values),
         "votes weighted by the similarity itself: weight them by exp(similarity / temperature)"),
        (vote(low_c.indices, torch.exp(low_c.values / t)),
         "the k *least* similar training images: take the k largest cosine similarities (topk(k, dim=1))"),
        (vote(top_c.indices[:, :1], torch.ones_like(top_c.values[:, :1])),
         "only the single nearest neighbour: let the k most similar images vote"),
    ]


def check_knn(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, float], torch.Tensor]) -> bool:
    """Check ``fn(train_x, train_y, test_x, k, temperature)`` -> predicted labels ``[N_test]``."""
    for seed, k, t in ((0, 20, 0.07), (1, 10, 0.5)):
        train_x, train_y, test_x = _knn_data(seed)
        dummy = torch.zeros(len(test_x), dtype=torch.long)
        expected = knn_classify(train_x, train_y, test_x, dummy, k=k, temperature=t)["predictions"]
        where = f"knn(train_x {list(train_x.shape)}, train_y, test_x {list(test_x.shape)}, k={k}, temperature={t})"
        got = _call(fn, "knn", train_x.clone(), train_y.clone(), test_x.clone(), k, t)
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
