"""The exercise checkers of notebooks 05-08 accept the reference solutions and reject the usual mistakes.

Every rejection must say what was expected and what came back, and name the mistake. The
reference solutions are written from the paper / official code, independently of the package,
as the notebooks' reference cells are.
"""

from __future__ import annotations

import math

import pytest
import torch

from mae_lesson import Config, MAE
from mae_lesson.exercises import ExerciseError
from mae_lesson.exercises.further import check_forward_flops, forward_flops
from mae_lesson.exercises.loss import check_mae_loss, check_normalize_patches
from mae_lesson.exercises.training import check_lr_schedule, check_scaled_lr


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


# ----------------------------------------------------------------------------------- 05 loss
def normalize_ok(target):
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1.0e-6) ** 0.5


def loss_ok(target, pred, mask, norm_pix_loss):
    if norm_pix_loss:
        target = normalize_ok(target)
    loss = ((pred - target) ** 2).mean(dim=-1)  # [N, L]
    return (loss * mask).sum() / mask.sum()


def test_normalize_patches_accepts_reference(capsys):
    accepts(check_normalize_patches, normalize_ok, capsys)
    accepts(check_normalize_patches, lambda t: (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, correction=1, keepdim=True) + 1e-6), capsys)


@pytest.mark.parametrize("fn, phrases", [
    (lambda t: (t - t.mean(-1, keepdim=True)) / (t.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5,
     ["biased variance", "unbiased"]),
    (lambda t: (t - t.mean((1, 2), keepdim=True)) / (t.var((1, 2), keepdim=True) + 1e-6) ** 0.5,
     ["per image", "its own statistics"]),
    (lambda t: (t - t.mean(1, keepdim=True)) / (t.var(1, keepdim=True) + 1e-6) ** 0.5, ["over the patches (dim=1)"]),
    (lambda t: (t - t.mean(-1, keepdim=True)) / (t.std(-1, keepdim=True) + 1e-6), ["eps added to the standard deviation"]),
    (lambda t: (t - t.mean(-1, keepdim=True)) / t.std(-1, keepdim=True), ["no eps", "NaN"]),
    (lambda t: t - t.mean(-1, keepdim=True), ["only the mean subtracted"]),
    (lambda t: t, ["unchanged"]),
])
def test_normalize_patches_rejects_mistakes(fn, phrases):
    rejects(check_normalize_patches, fn, *phrases)


def test_normalize_patches_rejects_per_channel_stats():
    def per_channel(t, channels=3):
        if t.shape[-1] % channels:  # the 1-channel case: the mistake is invisible there
            return normalize_ok(t)
        n, length, dim = t.shape
        x = t.reshape(n, length, dim // channels, channels)
        return ((x - x.mean(2, keepdim=True)) / (x.var(2, keepdim=True) + 1e-6) ** 0.5).reshape(n, length, dim)

    rejects(check_normalize_patches, per_channel, "per channel")


def test_normalize_patches_rejects_wrong_shape_and_crash():
    rejects(check_normalize_patches, lambda t: normalize_ok(t)[..., :-1], "shape")
    with pytest.raises(ExerciseError, match="raised NotImplementedError"):
        check_normalize_patches(raising)


def test_mae_loss_accepts_reference(capsys):
    accepts(check_mae_loss, loss_ok, capsys)
    # Element-wise with the mask broadcast, divided by the removed values: the same number.
    def elementwise(target, pred, mask, norm):
        target = normalize_ok(target) if norm else target
        err = (pred - target) ** 2 * mask[..., None]
        return err.sum() / (mask.sum() * target.shape[-1])
    accepts(check_mae_loss, elementwise, capsys)


def _loss_variant(change):
    def fn(target, pred, mask, norm):
        if norm and change != "norm_ignored":
            if change == "biased":
                target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5
            elif change == "per_image":
                target = (target - target.mean((1, 2), keepdim=True)) / (target.var((1, 2), keepdim=True) + 1e-6) ** 0.5
            else:
                target = normalize_ok(target)
            if change == "pred_normalised":
                pred = normalize_ok(pred)
        if change == "norm_always" and not norm:
            target = normalize_ok(target)
        err = (pred - target) ** 2
        if change == "sum_pixels":
            return (err.sum(-1) * mask).sum() / mask.sum()
        loss = err.mean(-1)
        if change == "all_patches":
            return loss.mean()
        if change == "visible":
            return (loss * (1 - mask)).sum() / (1 - mask).sum()
        if change == "mean_of_masked":
            return (loss * mask).mean()
        if change == "per_patch":
            return loss * mask
        if change == "l1":
            return ((pred - target).abs().mean(-1) * mask).sum() / mask.sum()
        return (loss * mask).sum() / mask.sum()
    return fn


@pytest.mark.parametrize("change, phrases", [
    ("all_patches", ["mean over all patches", "removed patches", "copying"]),
    ("visible", ["visible patches", "not by (1 - mask)"]),
    ("sum_pixels", ["sum over each patch", "mean(dim=-1)"]),
    ("mean_of_masked", ["divides by all N*L", "mask.sum()"]),
    ("l1", ["absolute error"]),
    ("norm_ignored", ["norm_pix_loss=True ignored"]),
    ("norm_always", ["norm_pix_loss=False"]),
    ("pred_normalised", ["prediction normalised"]),
    ("biased", ["norm_pix_loss with the biased variance"]),
    ("per_image", ["norm_pix_loss with one mean and variance per image"]),
    ("per_patch", ["scalar", "shape [2, 10]"]),
])
def test_mae_loss_rejects_mistakes(change, phrases):
    rejects(check_mae_loss, _loss_variant(change), *phrases)


def test_mae_loss_rejects_crash_and_non_tensor():
    with pytest.raises(ExerciseError, match="raised NotImplementedError"):
        check_mae_loss(raising)
    rejects(check_mae_loss, lambda *a: 0.5, "scalar torch.Tensor", "float")


def test_mae_loss_checker_reference_is_the_models_forward_loss():
    """The checker's reference is what MAE.forward_loss computes (so the notebook's proof is meaningful)."""
    torch.manual_seed(0)
    model = MAE(Config(img_size=8, patch_size=4, in_chans=3, embed_dim=16, encoder_depth=1, encoder_num_heads=2,
                       decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    imgs = torch.randn(2, 3, 8, 8)
    out = model(imgs)
    torch.testing.assert_close(out["loss"], loss_ok(model.patchify(imgs), out["pred"], out["mask"], True))


# ----------------------------------------------------------------------------- 06 training
def scaled_lr_ok(blr, batch_size, accum_iter):
    return blr * batch_size * accum_iter / 256


def lr_ok(step, base_lr, total_steps, warmup_steps, min_lr):
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_scaled_lr_accepts_reference(capsys):
    accepts(check_scaled_lr, scaled_lr_ok, capsys)
    accepts(check_scaled_lr, lambda b, n, a: torch.tensor(b * n * a / 256, dtype=torch.float64), capsys)


@pytest.mark.parametrize("fn, phrases", [
    (lambda b, n, a: b, ["blr unchanged", "effective batch / 256"]),
    (lambda b, n, a: b * n * a, ["no division by 256"]),
    (lambda b, n, a: b * n / 256, ["accum_iter ignored"]),
    (lambda b, n, a: b * math.sqrt(n * a / 256), ["square-root"]),
    (lambda b, n, a: b * 256 / (n * a), ["upside down"]),
    (lambda b, n, a: 2 * b * n * a / 256, ["expected", "* 256" if False else "/ 256"]),
    (lambda b, n, a: "1e-3", ["expected a number", "str"]),
])
def test_scaled_lr_rejects_mistakes(fn, phrases):
    rejects(check_scaled_lr, fn, *phrases)


def _lr_variant(change):
    def fn(step, base, total, warmup, min_lr):
        if change == "no_warmup":
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * step / total))
        if step < warmup:
            if change == "plus_one":
                return base * (step + 1) / warmup
            if change == "short":
                return base * step / (warmup + 1)
            return base * step / warmup
        if change == "short":
            return base * step / (warmup + 1) if step == warmup else lr_ok(step, base, total, warmup, min_lr)
        if change == "progress_from_zero":
            progress = step / total
        else:
            progress = (step - warmup) / max(1, total - warmup)
        if change == "no_min_lr":
            return base * 0.5 * (1 + math.cos(math.pi * progress))
        if change == "linear":
            return min_lr + (base - min_lr) * (1 - progress)
        if change == "full_cosine":
            return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(2 * math.pi * progress))
        return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return fn


def test_lr_schedule_accepts_reference(capsys):
    accepts(check_lr_schedule, lr_ok, capsys)


@pytest.mark.parametrize("change, phrases", [
    ("short", ["reach base_lr", "never reaches base_lr"]),
    ("progress_from_zero", ["reach base_lr", "(step - warmup_steps)"]),
    ("no_warmup", ["reach base_lr", "at step 0"]),
    ("plus_one", ["lr 0 at step 0", "not (step + 1)"]),
    ("no_min_lr", ["min_lr", "at the last step"]),
    ("full_cosine", ["min_lr", "at the last step"]),
    ("linear", ["cosine decay", "steps differ"]),
])
def test_lr_schedule_rejects_mistakes(change, phrases):
    rejects(check_lr_schedule, _lr_variant(change), *phrases)


def test_lr_schedule_rejects_crash():
    with pytest.raises(ExerciseError, match="raised NotImplementedError"):
        check_lr_schedule(raising)


# ---------------------------------------------------------------------------- 08 further
def flops_ok(cfg, mask_ratio):
    """Written out from the module docstring's convention (2 FLOPs per multiply-add)."""
    L = (cfg.img_size // cfg.patch_size) ** 2
    keep = int(L * (1 - mask_ratio))
    P = cfg.patch_size ** 2 * cfg.in_chans
    D, Dd, r = cfg.embed_dim, cfg.decoder_embed_dim, cfg.mlp_ratio

    def block(T, d):
        return 2 * T * (4 * d * d + 2 * int(r * d) * d) + 4 * T * T * d

    return (2 * L * P * D + cfg.encoder_depth * block(1 + keep, D) + 2 * (1 + keep) * D * Dd
            + cfg.decoder_depth * block(1 + L, Dd) + 2 * L * Dd * P)


def test_forward_flops_accepts_reference(capsys):
    accepts(check_forward_flops, flops_ok, capsys)
    accepts(check_forward_flops, lambda cfg, r: float(flops_ok(cfg, r)), capsys)


@pytest.mark.parametrize("variant, phrases", [
    ("macs", ["multiply-adds"]),
    ("no_masking", ["all L patches"]),
    ("no_cls", ["no cls token"]),
    ("no_attention", ["no attention products"]),
    ("attention_once", ["only one of the two"]),
    ("no_mlp", ["no MLP"]),
    ("decoder_visible", ["decoder on the visible"]),
    ("embed_visible", ["patch_embed on the visible"]),
    ("blocks_only", ["the blocks only"]),
])
def test_forward_flops_rejects_mistakes(variant, phrases):
    rejects(check_forward_flops, lambda cfg, r: forward_flops(cfg, r, _variant=variant), *phrases)


def test_forward_flops_rejects_other_answers():
    rejects(check_forward_flops, lambda cfg, r: 1.5 * flops_ok(cfg, r), "ratio got/expected = 1.5000")
    rejects(check_forward_flops, lambda cfg, r: "many", "expected a number")
    with pytest.raises(ExerciseError, match="raised NotImplementedError"):
        check_forward_flops(raising)


@pytest.mark.parametrize("name", ["fashion_mnist_tiny", "mae_base", "mae_huge"])
def test_forward_flops_matches_torch_flop_counter(name):
    """The formula is what torch's FlopCounterMode measures on a real forward (run on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = Config.from_file(name)
    with torch.device("meta"):
        model = MAE(cfg)
        imgs = torch.empty(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(imgs, mask_ratio=0.75)
    assert counter.get_total_flops() == forward_flops(cfg, 0.75) == flops_ok(cfg, 0.75)


# ------------------------------------------------------------------- notebook conventions
@pytest.mark.parametrize("name, checker", [
    ("05_loss.ipynb", "check_mae_loss"), ("06_pretraining.ipynb", "check_lr_schedule"),
    ("07_finetuning.ipynb", "check_knn"), ("08_going_further.ipynb", "check_forward_flops"),
    ("09_paper_in_miniature.ipynb", "check_standard_error"),
])
def test_notebooks_05_08_follow_the_course_conventions(name, checker):
    """Title with badge and module, the exact set-up cell, seeded, checked exercises, no widget state."""
    import json
    from pathlib import Path

    from mae_lesson.notebook import badge_markdown, setup_cell_source

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / name).read_text())
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and "**Teaches:** `mae_lesson." in first
    assert badge_markdown(name) in first and "Learning goals" in first
    assert "".join(cells[1]["source"]) == setup_cell_source()
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert any("mae_lesson.set_seed(0)" in src for src in code)
    assert any(checker + "(" in src for src in code)
    assert "widgets" not in nb["metadata"] and nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "num_workers=" not in "".join(code) or "num_workers=0" in "".join(code)
    for cell in cells:
        for out in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
            assert out.get("output_type") != "error", f"{name} was saved with an error output"
