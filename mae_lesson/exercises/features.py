"""Checkers for notebook 07's features: ``mean_pool`` and ``knn``.

- ``mean_pool``: the ``mean`` pool of :func:`mae_lesson.evaluate.extract_features` (average of the
  patch tokens, the cls token left out);
- ``knn``: :func:`mae_lesson.evaluate.knn_classify` (cosine similarity, the k most similar training
  images vote with weight ``exp(sim / T)``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..evaluate import knn_classify
from ._feedback import call_learner, checker, passed
from ._judge import Mistake, expect_shape, fail, judge

# ------------------------------------------------------------------------------- mean pool
# The case: latent [N, 1 + L, D], cls first; the shape rows need N, L and D too.
MEAN_POOL_MISTAKES = (
    Mistake("over_width", lambda c: [c["n"], 1 + c["length"]], shape=True,
            message="you averaged over the width D (dim=-1); average over the tokens (dim=1)"),
    Mistake("keepdim", lambda c: [c["n"], 1, c["dim"]], shape=True, message="drop keepdim=True"),
    Mistake("cls_included", lambda c: c["latent"].mean(dim=1), "the mean over all 1 + L tokens, the cls token included: "
            "the cls token is latent[:, 0]; average the patch tokens latent[:, 1:]"),
    Mistake("cls_token", lambda c: c["latent"][:, 0],
            "the cls token itself (that is the 'cls' feature); average the patch tokens latent[:, 1:]"),
    Mistake("last_dropped", lambda c: c["latent"][:, :-1].mean(dim=1), "the mean of latent[:, :-1], which keeps the cls "
            "token and drops the last patch: the cls token comes first, so take latent[:, 1:]"),
    Mistake("sum", lambda c: c["latent"][:, 1:].sum(dim=1), "the sum of the patch tokens: divide by L (use .mean(dim=1))"),
    Mistake("max", lambda c: c["latent"][:, 1:].amax(dim=1), "the maximum over the patch tokens (max pooling): take the mean"),
)


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
        judge(where, got, expected, MEAN_POOL_MISTAKES, {"latent": latent, "n": n, "length": length, "dim": dim},
              shape_hint="one D-dimensional feature per image", hint="latent[:, 1:].mean(dim=1)",
              found=lambda m: f"{where}: expected the mean of the {length} patch tokens (expected[0, :3] = "
                              f"{[round(v, 4) for v in expected[0, :3].tolist()]}), got {m} (got[0, :3] = "
                              f"{[round(v, 4) for v in got[0, :3].tolist()]})")
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


def _vote(c: dict, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each test image's class: the neighbours ``idx`` vote for their labels with ``weight``."""
    classes = int(c["train_y"].max()) + 1
    return torch.zeros(len(idx), classes, dtype=weight.dtype).scatter_add_(1, c["train_y"][idx], weight).argmax(1)


def _cos(c: dict) -> torch.Tensor:
    return F.normalize(c["test_x"], dim=1) @ F.normalize(c["train_x"], dim=1).T


def _near(c: dict) -> torch.return_types.topk:
    """The k euclidean nearest neighbours."""
    return torch.cdist(c["test_x"], c["train_x"]).topk(c["k"], dim=1, largest=False)


def _dot(c: dict) -> torch.return_types.topk:
    return (c["test_x"] @ c["train_x"].T).topk(c["k"], dim=1)


# The case: train_x, train_y, test_x, k and t (the temperature).
KNN_MISTAKES = (
    Mistake("euclidean_majority", lambda c: _vote(c, _near(c).indices, torch.ones_like(_near(c).values)),
            "euclidean distance (nearest by ||a - b||) with a plain majority vote: kNN on MAE features uses "
            "cosine similarity, F.normalize both sides and take the dot product"),
    Mistake("euclidean", lambda c: _vote(c, _near(c).indices, torch.exp(-_near(c).values / c["t"])),
            "euclidean distance (nearest by ||a - b||): kNN on MAE features uses cosine similarity, "
            "F.normalize both sides and take the dot product"),
    Mistake("euclidean_neighbours", lambda c: _vote(c, _near(c).indices, torch.exp(_cos(c).gather(1, _near(c).indices) / c["t"])),
            "euclidean nearest neighbours (weighted by cosine similarity): choose the neighbours by cosine "
            "similarity too"),
    Mistake("dot_majority", lambda c: _vote(c, _dot(c).indices, torch.ones_like(_dot(c).values)),
            "the raw dot product (features not normalised), majority vote: normalise with F.normalize(x, dim=1) "
            "so the feature length does not decide who is near"),
    Mistake("dot", lambda c: _vote(c, _dot(c).indices, torch.exp((_dot(c).values / c["t"]).clamp(max=80))),
            "the raw dot product (features not normalised): normalise with F.normalize(x, dim=1) so the "
            "feature length does not decide who is near"),
    Mistake("majority", lambda c: _vote(c, _cos(c).topk(c["k"], dim=1).indices, torch.ones_like(_cos(c).topk(c["k"], dim=1).values)),
            "an unweighted majority vote: each neighbour votes with weight exp(similarity / temperature)"),
    Mistake("linear_weights", lambda c: _vote(c, *reversed(_cos(c).topk(c["k"], dim=1))),
            "votes weighted by the similarity itself: weight them by exp(similarity / temperature)"),
    Mistake("least_similar", lambda c: (lambda low: _vote(c, low.indices, torch.exp(low.values / c["t"])))(
        _cos(c).topk(c["k"], dim=1, largest=False)),
            "the k *least* similar training images: take the k largest cosine similarities (topk(k, dim=1))"),
    Mistake("nearest_only", lambda c: (lambda top: _vote(c, top.indices[:, :1], torch.ones_like(top.values[:, :1])))(
        _cos(c).topk(c["k"], dim=1)), "only the single nearest neighbour: let the k most similar images vote"),
)


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
            fail(f"{where}: expected the predicted labels, a tensor of shape {[len(test_x)]}, got a "
                 f"single number ({got}): return the predictions, not the accuracy")
        expect_shape(where, got, [len(test_x)], hint="one predicted class per test image: votes.argmax(dim=1)")
        got = got.long()
        said = f"{where}: expected predictions {expected[:12].tolist()}..., got {got[:12].tolist()}... " \
               f"({int((got != expected).sum())} of {len(got)} differ)"
        judge(where, got, expected, KNN_MISTAKES, {"train_x": train_x, "train_y": train_y, "test_x": test_x, "k": k, "t": t},
              matches=torch.equal, found=lambda m: f"{said}. You used {m}", differs=lambda: fail(
                  f"{said}: sims = F.normalize(test_x) @ F.normalize(train_x).T, take the top k, add "
                  f"exp(sim / temperature) to each neighbour's class, predict the class with the largest total"))
    return passed("knn", "cosine similarity, k nearest vote with weight exp(sim / T)")
