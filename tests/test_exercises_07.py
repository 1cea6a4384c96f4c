"""The exercise checkers of notebook 07 accept the reference solutions and reject the usual mistakes.

Every rejection must say what was expected and what came back, and name the mistake. The
reference solutions are written from the paper / official code, independently of the package,
as the notebook's reference cells are.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mae_lesson.exercises import ExerciseError
from mae_lesson.exercises.finetuning import check_knn, check_mean_pool


def rejects(checker, fn, *phrases: str) -> str:
    """Assert ``checker(fn)`` raises ExerciseError whose message has expected/got and every phrase."""
    with pytest.raises(ExerciseError) as info:
        checker(fn)
    message = str(info.value)
    assert "expected" in message and "got" in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in: {message}"
    return message


def accepts(checker, fn, capsys) -> None:
    assert checker(fn) is True
    assert capsys.readouterr().out.startswith("Correct: ")


def raising(*args):
    raise NotImplementedError("your code")


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
    with pytest.raises(ExerciseError, match="raised NotImplementedError"):
        check_knn(raising)
    rejects(check_knn, lambda a, b, c, k, t: knn_ok(a, b, c, k, t)[:-1], "shape")
