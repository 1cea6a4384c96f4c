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
from mae_lesson.exercises import assembly, training
from mae_lesson.exercises.assembly import check_mae_forward
from mae_lesson.exercises.training import check_lr_schedule, check_scaled_lr, check_train_one_epoch, check_train_step
from mae_lesson.masking import masking_noise

from conftest import accepts, not_attempted, official_loss, official_random_masking, raising, rejects


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


def test_mae_forward_names_a_forward_without_gradients():
    """A forward under torch.no_grad() matched every value, then 05's training cell died in backward()."""
    def no_grad_forward(model, imgs, noise):
        with torch.no_grad():
            return official_forward(model, imgs, noise)
    rejects(check_mae_forward, no_grad_forward, "requires grad", "torch.no_grad()")
    rejects(check_mae_forward, lambda m, i, n: (lambda out: (out[0].detach(), *out[1:]))(official_forward(m, i, n)),
            "requires_grad=False")


def test_scaled_lr_names_integer_division():
    """blr * (b * a // 256) is right on every multiple of 256 and broke 06's next cell: now a named mistake."""
    rejects(check_scaled_lr, lambda blr, b, a: blr * (b * a // 256), "integer division", "batch_size=100")


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
    rejects(check_normalize_patches, lambda t: t.mean(dim=3), "raised IndexError")


def test_normalize_patches_reports_the_stub_as_not_attempted(capsys):
    not_attempted(check_normalize_patches, raising, capsys, "normalize_patches")
    rejects(check_normalize_patches, lambda t: None, "returned None: did you forget `return`?")


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


def test_mae_loss_rejects_crash_and_non_tensor(capsys):
    not_attempted(check_mae_loss, raising, capsys, "mae_loss")
    rejects(check_mae_loss, lambda *a: ...)
    rejects(check_mae_loss, lambda *a: 1 / 0, "raised ZeroDivisionError")
    rejects(check_mae_loss, lambda *a: 0.5, "scalar torch.Tensor", "float")


def test_mae_loss_checker_reference_is_the_models_forward_loss():
    """The checker's reference is what MAE.forward_loss computes (so the notebook's proof is meaningful)."""
    torch.manual_seed(0)
    model = MAE(Config(img_size=8, patch_size=4, in_chans=3, embed_dim=16, encoder_depth=1, encoder_num_heads=2,
                       decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    imgs = torch.randn(2, 3, 8, 8)
    out = model(imgs)
    torch.testing.assert_close(out["loss"], loss_ok(model.patchify(imgs), out["pred"], out["mask"], True))


# ------------------------------------------------------------------------ 05 put it together
def official_forward(model, imgs, noise):
    """The official forward_encoder / forward_decoder / forward_loss, inline, on the model's parameters."""
    x = model.patch_embed(imgs) + model.pos_embed[:, 1:, :]
    x_masked, mask, ids_restore = official_random_masking(x, model.mask_ratio, noise)
    cls = (model.cls_token + model.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x_masked], dim=1)
    for blk in model.blocks:
        x = blk(x)
    x = model.decoder_embed(model.norm(x))
    tokens = torch.cat([x[:, 1:, :], model.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)], dim=1)
    tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1, :], tokens], dim=1) + model.decoder_pos_embed
    for blk in model.decoder_blocks:
        x = blk(x)
    pred = model.decoder_pred(model.decoder_norm(x))[:, 1:, :]
    return official_loss(imgs, pred, mask, model.patch_size, model.norm_pix_loss), pred, mask


def test_mae_forward_accepts_the_official_forward(capsys):
    accepts(check_mae_forward, official_forward, capsys)
    accepts(check_mae_forward, lambda m, i, n: (lambda out: (out["loss"], out["pred"], out["mask"]))(
        {"loss": official_forward(m, i, n)[0], "pred": official_forward(m, i, n)[1], "mask": official_forward(m, i, n)[2]}),
        capsys)


def test_mae_forward_reference_pieces_equal_the_package(tiny_model, tiny_images):
    """The pieces notebook 05 imports as `earlier` compose to MAE.forward (the notebook's proof)."""
    noise = torch.rand(2, 64, generator=torch.Generator().manual_seed(3))
    latent, mask, ids = assembly.forward_encoder(tiny_model, tiny_images, tiny_model.mask_ratio, noise)
    pred = assembly.forward_decoder(tiny_model, latent, ids)
    out = tiny_model(tiny_images, noise=noise)
    torch.testing.assert_close(pred, out["pred"])
    torch.testing.assert_close(assembly.mae_loss(assembly.patchify(tiny_images, 4), pred, mask, True), out["loss"])


def _forward_variant(change):
    def fn(model, imgs, noise):
        ratio = 0.75 if change == "fixed_ratio" else model.mask_ratio
        latent, mask, ids = assembly.forward_encoder(model, imgs, ratio, noise)
        pred = assembly.forward_decoder(model, latent, ids)
        norm = (not model.norm_pix_loss) if change == "norm_flipped" else model.norm_pix_loss
        loss = assembly.mae_loss(assembly.patchify(imgs, model.patch_size), pred, mask, norm)
        if change == "order":
            return pred, loss, mask
        if change == "dict":
            return {"loss": loss, "pred": pred, "mask": mask}
        if change == "inverted_mask":
            return loss, pred, 1 - mask
        if change == "pred_off":
            return loss, pred * 1.01, mask
        return loss, pred, mask
    return fn


@pytest.mark.parametrize("change, phrases", [
    ("fixed_ratio", ["model.mask_ratio = 0.6", "not a fixed 0.75"]),
    ("norm_flipped", ["model.norm_pix_loss = True"]),
    ("order", ["in that order"]),
    ("dict", ["a dict", "return loss, pred, mask"]),
    ("inverted_mask", ["with 10 removed per image", "got [3, 16] with 6 removed", "mask is inverted"]),
    ("pred_off", ["pred", "notebooks 03 and 04"]),
])
def test_mae_forward_rejects_mistakes(change, phrases):
    rejects(check_mae_forward, _forward_variant(change), *phrases)


def test_mae_forward_refuses_the_package_forward(capsys):
    rejects(check_mae_forward, lambda m, i, n: (lambda o: (o["loss"], o["pred"], o["mask"]))(m(i, noise=n)), "model.forward is switched off")
    rejects(check_mae_forward, lambda m, i, n: m.forward_encoder(i, m.mask_ratio, n), "model.forward_encoder is switched off")
    not_attempted(check_mae_forward, raising, capsys, "mae_forward")
    rejects(check_mae_forward, lambda m, i, n: None, "returned None: did you forget `return`?")


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


def test_lr_schedule_rejects_crash(capsys):
    not_attempted(check_lr_schedule, raising, capsys, "lr_schedule")
    rejects(check_scaled_lr, lambda *a: None, "returned None: did you forget `return`?")
    rejects(check_lr_schedule, lambda step, *a: 1 / step, "raised ZeroDivisionError")


def engine_step(model, optimizer, schedule, imgs, noise):
    """The official engine's order: forward, backward, step, clear the gradients, then the schedule."""
    optimizer.zero_grad()
    loss = model(imgs, noise=noise)["loss"]
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


@pytest.mark.slow
def test_train_step_accepts_the_engines_order(capsys):
    accepts(check_train_step, engine_step, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("change, phrases", [
    ("no_zero_grad", ["never cleared"]),
    ("no_optimizer_step", ["weights never change"]),
    ("no_schedule", ["no schedule.step()"]),
    ("schedule_first", ["schedule.step() before optimizer.step()"]),
    ("loss_after", ["loss recomputed after the update"]),
])
def test_train_step_rejects_mistakes(change, phrases):
    rejects(check_train_step, training._step_variant(change), *phrases)


@pytest.mark.slow
def test_train_step_rejects_other_answers(capsys):
    rejects(check_train_step, lambda m, o, s, i, n: engine_step(m, o, s, i, torch.rand(n.shape)), "with the noise passed")
    rejects(check_train_step, lambda m, o, s, i, n: torch.tensor(engine_step(m, o, s, i, n)), "loss.item()")
    rejects(check_train_step, lambda m, o, s, i, n: engine_step(m, o, s, i, n) * 2, "at the first step")
    not_attempted(check_train_step, raising, capsys, "train_step")


def test_train_step_checker_reference_is_the_engines_step():
    """The checker's reference step gives what mae_lesson.pretrain.train_step gives (so the notebook's proof holds)."""
    from mae_lesson.pretrain import train_step

    runs = [training._tiny_setup() for _ in range(2)]
    for imgs, noise in training._batches():
        mine = training.reference_train_step(*runs[0], imgs, noise)
        theirs = train_step(*runs[1], [(imgs, noise)])
        assert mine == pytest.approx(theirs, rel=1e-6)
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        torch.testing.assert_close(a, b)
    assert runs[0][1].param_groups[0]["lr"] == runs[1][1].param_groups[0]["lr"] > 0


def epoch_ok(model, optimizer, schedule, loader, epoch, train_step):
    loader.set_epoch(epoch)
    losses = []
    for imgs, _, seed in loader:  # iterating gives batch(0), batch(1), ...
        gen = torch.Generator().manual_seed(seed + 1)
        noise = masking_noise(model.config.mask_type, imgs.shape[0], model.patch_embed.grid_size, model.mask_ratio,
                              generator=gen)
        losses.append(train_step(model, optimizer, schedule, imgs, noise))
    return losses


@pytest.mark.slow
def test_train_one_epoch_accepts_the_engines_loop(capsys):
    accepts(check_train_one_epoch, epoch_ok, capsys)


def _epoch_variant(change):
    def fn(model, optimizer, schedule, loader, epoch, train_step):
        if change != "no_set_epoch":
            loader.set_epoch(epoch)
        losses = []
        for k in range(len(loader) - (change == "one_short")):
            imgs, _, seed = loader.batch(k)
            if change == "global_noise":
                noise = model.mask_noise(imgs.shape[0])
            else:
                noise = model.mask_noise(imgs.shape[0], generator=torch.Generator().manual_seed(seed + (change != "seed_noise")))
            losses.append(train_step(model, optimizer, schedule, imgs, noise))
        if change == "extra_schedule_step":
            schedule.step()  # once more per epoch: the losses of epoch 1 are right, its last lr is not
        return losses[::-1] if change == "reversed" else losses
    return fn


@pytest.mark.slow
@pytest.mark.parametrize("change, phrases", [
    ("no_set_epoch", ["epoch 0's batches", "loader.set_epoch(epoch)"]),
    ("seed_noise", ["batch seed itself", "seed + 1"]),
    ("global_noise", ["global random state"]),
    ("one_short", ["expected 5 calls", "got 4"]),
    ("reversed", ["in order"]),
    ("extra_schedule_step", ["after epoch 1", "the schedule is stepped outside train_step"]),
])
def test_train_one_epoch_rejects_mistakes(change, phrases):
    rejects(check_train_one_epoch, _epoch_variant(change), *phrases)


def test_train_one_epoch_reports_the_stub(capsys):
    not_attempted(check_train_one_epoch, raising, capsys, "train_one_epoch")


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


def test_forward_flops_reports_the_stub_as_not_attempted(capsys):
    not_attempted(check_forward_flops, raising, capsys, "forward_flops")
    rejects(check_forward_flops, lambda cfg, r: None, "returned None: did you forget `return`?")


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

    from tools.notebooks import badge_markdown, setup_cell_source

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
