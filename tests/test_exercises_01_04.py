"""The exercise checkers of notebooks 00-04 accept the reference solutions and reject the usual mistakes.

Every rejection must say what was expected and what came back, and name the mistake, so a
learner can act on it. The reference solutions here are written independently of the
package (official recipes), as the notebooks' reference cells are.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from mae_lesson.exercises import ExerciseError, NotAttempted, checker, use
from mae_lesson.exercises.decoder import check_forward_decoder, check_unshuffle
from mae_lesson.exercises.encoder import check_attention, check_block_forward, check_forward_encoder
from mae_lesson.exercises.masking import check_masked_images, check_random_masking
from mae_lesson.exercises.patches import check_patchify, check_sincos_2d
from mae_lesson.exercises.welcome import check_encoder_tokens
from mae_lesson.masking import random_masking
from mae_lesson.pos_embed import sincos_1d

from conftest import accepts, not_attempted, raising, rejects


# ------------------------------------------------------------------------- 00 welcome
def encoder_tokens_ok(img_size, patch_size, mask_ratio):
    return 1 + math.floor((img_size // patch_size) ** 2 * (1 - mask_ratio))


def test_encoder_tokens_accepts_reference(capsys):
    accepts(check_encoder_tokens, encoder_tokens_ok, capsys)


@pytest.mark.parametrize("fn, phrase", [
    (lambda i, p, r: int((i // p) ** 2 * (1 - r)), "cls token is missing"),
    (lambda i, p, r: 1 + (i // p) ** 2, "every patch"),
    (lambda i, p, r: 1 + round((i // p) ** 2 * (1 - r)), "rounds down"),
    (lambda i, p, r: 1 + (i // p) ** 2 - int((i // p) ** 2 * (1 - r)), "removed patches"),
    (lambda i, p, r: 1.0 + int((i // p) ** 2 * (1 - r)), "whole number"),
])
def test_encoder_tokens_rejects_mistakes(fn, phrase):
    rejects(check_encoder_tokens, fn, phrase)


# ------------------------------------------------------------------------- 01 patches
def patchify_ok(imgs, p):
    return rearrange(imgs, "n c (h p) (w q) -> n (h w) (p q c)", p=p, q=p)


def patchify_official(imgs, p):  # facebookresearch/mae's reshape + einsum
    n, c, hh, ww = imgs.shape
    x = imgs.reshape(n, c, hh // p, p, ww // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (hh // p) * (ww // p), p * p * c)


@pytest.mark.parametrize("fn", [patchify_ok, patchify_official])
def test_patchify_accepts_reference(fn, capsys):
    accepts(check_patchify, fn, capsys)


@pytest.mark.parametrize("pattern, phrases", [
    ("n c (h p) (w q) -> n (h w) (c p q)", ["(c p q)", "channel"]),
    ("n c (h p) (w q) -> n (w h) (p q c)", ["(w h)", "row by row"]),
    ("n c (h p) (w q) -> n (h w) (q p c)", ["(q p c)", "transposed"]),
])
def test_patchify_rejects_wrong_layouts(pattern, phrases):
    rejects(check_patchify, lambda imgs, p: rearrange(imgs, pattern, p=p, q=p), *phrases)


def test_patchify_rejects_wrong_shape_and_crash():
    msg = rejects(check_patchify, lambda imgs, p: rearrange(imgs, "n c (h p) (w q) -> n (h w) p q c", p=p, q=p))
    assert "[2, 6, 48]" in msg
    rejects(check_patchify, lambda imgs, p: 1 / 0, "patchify([2, 3, 8, 12], 4) raised ZeroDivisionError")
    rejects(check_patchify, lambda imgs, p: 3, "got int")


def sincos_2d_ok(embed_dim, grid_size):
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    return torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1).float()


def test_sincos_2d_accepts_reference(capsys):
    accepts(check_sincos_2d, sincos_2d_ok, capsys)


def test_sincos_2d_names_a_float64_table():
    """Without hint 3's .float() the values match but 01's proof cells fail on dtype: a mistake, not Correct."""
    rejects(check_sincos_2d, lambda d, g: sincos_2d_ok(d, g).double(), "expected dtype torch.float32", ".float()")


def test_sincos_2d_rejects_mistakes():
    def row_first(d, g):
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        return torch.cat([sincos_1d(d // 2, rows), sincos_1d(d // 2, cols)], dim=1)

    rejects(check_sincos_2d, row_first, "column code in the first half")
    rejects(check_sincos_2d, lambda d, g: torch.cat([torch.zeros(1, d), sincos_2d_ok(d, g)]), "cls row")
    rejects(check_sincos_2d, lambda d, g: sincos_2d_ok(2 * d, g), "half the width")
    rejects(check_sincos_2d, lambda d, g: sincos_2d_ok(d, g) * 2, "values differ")


# ------------------------------------------------------------------------- 02 masking
def masking_official(x, mask_ratio, noise):
    n, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, dim))
    mask = torch.ones(n, length)
    mask[:, :len_keep] = 0
    return x_masked, torch.gather(mask, 1, ids_restore), ids_restore


def test_random_masking_accepts_reference(capsys):
    accepts(check_random_masking, masking_official, capsys)
    accepts(check_random_masking, lambda x, r, noise: (lambda a, b, c: (a, b.bool(), c))(*masking_official(x, r, noise)), capsys)


def _masking_variant(change):
    def fn(x, mask_ratio, noise):
        n, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        if change == "round":
            len_keep = round(length * (1 - mask_ratio))
        if change == "kept_count_of_removed":
            len_keep = length - len_keep
        ids_shuffle = torch.argsort(-noise if change == "descending" else noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        if change == "image_order":
            ids_keep = ids_keep.sort(dim=1).values
        if change == "first_tokens":
            ids_keep = torch.arange(len_keep).expand(n, len_keep)
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(n, length)
        mask[:, :len_keep] = 0
        if change != "mask_not_unshuffled":
            mask = torch.gather(mask, 1, ids_restore)
        if change == "inverted":
            mask = 1 - mask
        if change == "restore_is_shuffle":
            ids_restore = ids_shuffle
        return x_masked, mask, ids_restore
    return fn


@pytest.mark.parametrize("change, phrases", [
    ("inverted", ["inverted", "0 for the", "got 1 for kept"]),
    ("descending", ["smallest noise", "largest"]),
    ("mask_not_unshuffled", ["shuffled order", "ids_restore"]),
    ("restore_is_shuffle", ["argsort(ids_shuffle)", "ids_shuffle itself"]),
    ("round", ["int(L * (1 - mask_ratio))", "[3, 3, 4]"]),
    ("kept_count_of_removed", ["number to remove"]),
    ("image_order", ["shuffled order", "image order"]),
    ("first_tokens", ["first", "image order"]),
])
def test_random_masking_rejects_mistakes(change, phrases):
    rejects(check_random_masking, _masking_variant(change), *phrases)


def test_random_masking_rejects_non_tuple():
    rejects(check_random_masking, lambda x, r, noise: x, "tuple (x_masked, mask, ids_restore)")


def masked_images_ok(imgs, mask, p):
    n, c, h, w = imgs.shape
    pixel = mask.reshape(n, 1, h // p, w // p).repeat_interleave(p, 2).repeat_interleave(p, 3)
    return imgs * (1 - pixel)


def test_masked_images_accepts_reference(capsys):
    accepts(check_masked_images, masked_images_ok, capsys)


def test_masked_images_rejects_mistakes():
    def inverted(imgs, mask, p):
        return masked_images_ok(imgs, 1 - mask, p)

    def transposed(imgs, mask, p):
        n, c, h, w = imgs.shape
        m = mask.reshape(n, w // p, h // p).transpose(1, 2).reshape(n, -1)
        return masked_images_ok(imgs, m, p)

    rejects(check_masked_images, inverted, "kept ones zeroed", "(1 - mask)")
    rejects(check_masked_images, lambda imgs, mask, p: imgs, "unchanged")
    rejects(check_masked_images, transposed, "values differ")  # the non-square case catches it first
    def square_only_transposed(imgs, mask, p):
        return masked_images_ok(imgs, mask, p) if imgs.shape[-1] != imgs.shape[-2] else transposed(imgs, mask, p)
    rejects(check_masked_images, square_only_transposed, "transposed")


# ------------------------------------------------------------------------- 03 encoder
def attention_ok(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.softmax(dim=-1) @ v


def test_attention_accepts_reference_and_sdpa(capsys):
    accepts(check_attention, attention_ok, capsys)
    accepts(check_attention, F.scaled_dot_product_attention, capsys)


@pytest.mark.parametrize("fn, phrases", [
    (lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v, ["not scaled", "sqrt(d)"]),
    (lambda q, k, v: (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1) @ v, ["divided by d = 16"]),
    (lambda q, k, v: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2) @ v, ["dim=-1"]),
    (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), ["causal"]),
    (lambda q, k, v: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1), ["attention weights", "by v"]),
])
def test_attention_rejects_mistakes(fn, phrases):
    rejects(check_attention, fn, *phrases)


def block_ok(block, x):
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


def test_block_accepts_reference(capsys):
    accepts(check_block_forward, block_ok, capsys)
    accepts(check_block_forward, lambda block, x: block(x), capsys)


@pytest.mark.parametrize("fn, phrase", [
    (lambda b, x: (lambda y: b.norm2(y + b.mlp(y)))(b.norm1(x + b.attn(x))), "post-norm"),
    (lambda b, x: (lambda y: y + b.mlp(b.norm2(y)))(b.attn(b.norm1(x))), "residual connections are missing"),
    (lambda b, x: (lambda y: b.mlp(b.norm2(y)))(x + b.attn(b.norm1(x))), "MLP's residual"),
    (lambda b, x: x + b.attn(b.norm1(x)) + b.mlp(b.norm2(x)), "output of the attention step"),
    (lambda b, x: (lambda y: y + b.mlp(b.norm1(y)))(x + b.attn(b.norm2(x))), "swapped"),
    (lambda b, x: (lambda y: y + b.mlp(y))(x + b.attn(x)), "LayerNorms are missing"),
])
def test_block_rejects_mistakes(fn, phrase):
    rejects(check_block_forward, fn, phrase)


def encoder_ok(model, imgs, mask_ratio, noise):
    x = model.patch_embed(imgs) + model.pos_embed[:, 1:, :]
    x, mask, ids_restore = random_masking(x, mask_ratio, noise)
    cls = (model.cls_token + model.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x), mask, ids_restore


def _encoder_variant(change):
    def fn(model, imgs, mask_ratio, noise):
        x = model.patch_embed(imgs)
        if change not in ("no_pos", "pos_after"):
            x = x + model.pos_embed[:, 1:, :]
        masked, mask, ids_restore = random_masking(x, mask_ratio, noise)
        if change == "pos_after":
            masked = masked + model.pos_embed[:, 1:1 + masked.shape[1], :]
        if change in ("all_patches", "all_no_cls"):
            masked = x
        cls = (model.cls_token + model.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        if change in ("no_cls", "all_no_cls"):
            seq = masked
        elif change == "cls_last":
            seq = torch.cat([masked, cls], dim=1)
        else:
            seq = torch.cat([cls, masked], dim=1)
        for blk in model.blocks:
            seq = blk(seq)
        return (seq if change == "no_norm" else model.norm(seq)), mask, ids_restore
    return fn


def test_forward_encoder_accepts_reference(capsys):
    accepts(check_forward_encoder, encoder_ok, capsys)
    accepts(check_forward_encoder, lambda m, imgs, r, noise: m.forward_encoder(imgs, r, noise), capsys)


@pytest.mark.parametrize("change, phrase", [
    ("all_patches", "only the visible patches"),
    ("all_no_cls", "all patches and no cls"),
    ("no_cls", "cls token is missing"),
    ("no_pos", "position embeddings are missing"),
    ("pos_after", "after masking"),
    ("cls_last", "prepend it"),
    ("no_norm", "final LayerNorm"),
])
def test_forward_encoder_rejects_mistakes(change, phrase):
    rejects(check_forward_encoder, _encoder_variant(change), phrase)


# ------------------------------------------------------------------------- 04 decoder
def unshuffle_ok(x_visible, mask_token, ids_restore):
    n, keep, dim = x_visible.shape
    x_ = torch.cat([x_visible, mask_token.expand(n, ids_restore.shape[1] - keep, -1)], dim=1)
    return torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))


def test_unshuffle_accepts_reference(capsys):
    accepts(check_unshuffle, unshuffle_ok, capsys)


def test_unshuffle_rejects_mistakes():
    def no_unshuffle(x_visible, mask_token, ids_restore):
        n, keep, _ = x_visible.shape
        return torch.cat([x_visible, mask_token.expand(n, ids_restore.shape[1] - keep, -1)], dim=1)

    def with_ids_shuffle(x_visible, mask_token, ids_restore):
        return unshuffle_ok(x_visible, mask_token, torch.argsort(ids_restore, dim=1))

    def mask_first(x_visible, mask_token, ids_restore):
        n, keep, dim = x_visible.shape
        x_ = torch.cat([mask_token.expand(n, ids_restore.shape[1] - keep, -1), x_visible], dim=1)
        return torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))

    rejects(check_unshuffle, no_unshuffle, "still in shuffled order", "ids_restore")
    rejects(check_unshuffle, with_ids_shuffle, "ids_shuffle")
    rejects(check_unshuffle, mask_first, "mask tokens come first")
    rejects(check_unshuffle, lambda x_visible, mask_token, ids_restore: x_visible, "[2, 16, 6]")


def decoder_ok(model, latent, ids_restore):
    x = model.decoder_embed(latent)
    n, t, dim = x.shape
    x_ = torch.cat([x[:, 1:, :], model.mask_token.expand(n, ids_restore.shape[1] + 1 - t, -1)], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))
    x = torch.cat([x[:, :1, :], x_], dim=1) + model.decoder_pos_embed
    for blk in model.decoder_blocks:
        x = blk(x)
    return model.decoder_pred(model.decoder_norm(x))[:, 1:, :]


def _decoder_variant(change):
    def fn(model, latent, ids_restore):
        x = model.decoder_embed(latent)
        n, t, dim = x.shape
        x_ = torch.cat([x[:, 1:, :], model.mask_token.expand(n, ids_restore.shape[1] + 1 - t, -1)], dim=1)
        if change != "no_unshuffle":
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))
        if change == "drop_cls_early":
            x = x_ + model.decoder_pos_embed[:, 1:, :]
        else:
            x = torch.cat([x[:, :1, :], x_], dim=1)
            if change != "no_pos":
                x = x + model.decoder_pos_embed
        for blk in model.decoder_blocks:
            x = blk(x)
        if change != "no_norm":
            x = model.decoder_norm(x)
        x = model.decoder_pred(x)
        return x if change in ("keep_cls_pred", "drop_cls_early") else x[:, 1:, :]
    return fn


@pytest.mark.slow
def test_forward_decoder_accepts_reference(capsys):
    accepts(check_forward_decoder, decoder_ok, capsys)
    accepts(check_forward_decoder, lambda m, latent, ids: m.forward_decoder(latent, ids), capsys)


@pytest.mark.parametrize("change, phrase", [
    ("no_unshuffle", "not un-shuffled"),
    ("no_pos", "decoder_pos_embed is missing"),
    ("no_norm", "decoder_norm is missing"),
    ("keep_cls_pred", "drop the cls"),
    ("drop_cls_early", "dropped before the decoder blocks"),
])
def test_forward_decoder_rejects_mistakes(change, phrase):
    rejects(check_forward_decoder, _decoder_variant(change), phrase)


def test_checkers_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for check, fn in ((check_block_forward, block_ok), (check_forward_encoder, encoder_ok),
                        (check_forward_decoder, decoder_ok), (check_random_masking, masking_official)):
        check(fn)
    assert torch.equal(torch.get_rng_state(), before)


# ------------------------------------------------------------------------- not attempted / use
ALL_CHECKERS = [check_encoder_tokens, check_patchify, check_sincos_2d, check_random_masking, check_masked_images, check_attention,
                check_block_forward, check_forward_encoder, check_unshuffle, check_forward_decoder]


def stub(*args):
    # your code here
    ...


def stub_pass(*args):
    """A stub with pass instead of ..."""
    pass


def forgot_return(*args):
    answer = args[0]  # noqa: F841 - computes something, then forgets to return it


@pytest.mark.parametrize("check", ALL_CHECKERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("fn", [stub, stub_pass, raising], ids=["ellipsis", "pass", "not_implemented"])
def test_untouched_stub_is_not_attempted(check, fn, capsys):
    not_attempted(check, fn, capsys, check.__name__.removeprefix("check_"))


@pytest.mark.parametrize("check", ALL_CHECKERS, ids=lambda c: c.__name__)
def test_a_body_without_return_is_not_the_stub(check):
    rejects(check, forgot_return, "returned None: did you forget `return`?")


def test_is_stub_reads_the_source_not_the_value():
    from mae_lesson.exercises import is_stub

    def in_place(x):
        x.zero_()

    def returns_none():
        return None

    assert is_stub(stub) and is_stub(stub_pass) and is_stub(raising)
    assert not is_stub(in_place) and not is_stub(forgot_return) and not is_stub(returns_none)
    assert not is_stub(lambda x: None) and not is_stub(3)


@pytest.mark.parametrize("check", ALL_CHECKERS, ids=lambda c: c.__name__)
def test_crash_is_still_an_error(check):
    def crash(*args):
        raise RuntimeError("boom")
    printed = rejects(check, crash, "raised RuntimeError: boom")
    # The learner's frame is shown, the package's frames are not.
    assert "Traceback of your code" in printed and 'raise RuntimeError("boom")' in printed, printed
    assert "_feedback.py" not in printed and "mae_lesson" not in printed, printed


def test_checker_passes_answers_and_wrong_answers_through(capsys):
    @checker("thing")
    def check_thing(fn):
        from mae_lesson.exercises import call_learner
        value = call_learner(fn, "thing", 2)
        if value != 4:
            raise ExerciseError(f"thing(2): expected 4, got {value}")
        return True

    assert check_thing(lambda x: x * 2) is True
    assert check_thing(lambda x: x + 1) is False
    assert "Not correct: thing(2): expected 4, got 3" in capsys.readouterr().out
    assert check_thing(stub) is False
    assert "Not attempted yet: write my_thing above" in capsys.readouterr().out
    assert check_thing(lambda x: None) is False
    assert "Not correct: thing(2) returned None: did you forget `return`?" in capsys.readouterr().out
    assert check_thing.__name__ == "check_thing"


def test_a_recheck_starts_from_not_passed(capsys):
    """Passing, then editing the function into a wrong one and re-checking, leaves ok False."""
    from mae_lesson.exercises import RESULTS
    ok_patchify = check_patchify(lambda imgs, p: rearrange(imgs, "n c (h p) (w q) -> n (h w) (p q c)", p=p, q=p))
    assert ok_patchify is True and RESULTS["patchify"] == "passed"
    ok_patchify = check_patchify(lambda imgs, p: rearrange(imgs, "n c (h p) (w q) -> n (h w) (p q c)", p=p, q=p) + 1)
    assert ok_patchify is False and RESULTS["patchify"] == "not correct"
    assert "The notebook goes on with the reference solution. Fix my_patchify and re-run this cell" \
        in capsys.readouterr().out


@pytest.mark.parametrize("value", [np.int64(8), torch.tensor(8), np.int32(8)], ids=["numpy", "torch", "int32"])
def test_an_int_like_scalar_counts_as_an_int_with_a_note(value, capsys):
    """encoder_tokens(28, 7, 0.9) is 1 + int(16 * 0.1) = 2; here every case answers through a conversion."""
    def tokens(img_size, patch_size, ratio):
        return type(value)(1 + int((img_size // patch_size) ** 2 * (1 - ratio))) if not isinstance(value, torch.Tensor) \
            else torch.tensor(1 + int((img_size // patch_size) ** 2 * (1 - ratio)))
    assert check_encoder_tokens(tokens) is True
    printed = capsys.readouterr().out
    assert printed.startswith("Correct: ") and "Note: " in printed and "used as the int" in printed, printed
    rejects(check_encoder_tokens, lambda *a: float(tokens(*a)), "expected a whole number (int)", "rounds down")
    rejects(check_encoder_tokens, lambda *a: torch.tensor([1, 2]), "expected a whole number (int)")


def test_the_reference_check_does_not_read_as_the_learners(capsys):
    def reference_patchify(imgs, p):
        return rearrange(imgs, "n c (h p) (w q) -> n (h w) (p q c)", p=p, q=p)

    assert check_patchify(reference_patchify, reference=True) is None
    printed = capsys.readouterr().out
    assert "Correct" not in printed and "reference solution" in printed, printed
    with pytest.raises(ExerciseError):  # a broken reference is the package's bug: it must stop
        check_patchify(lambda imgs, p: imgs, reference=True)


def test_not_attempted_unwrapped_still_names_the_call():
    from mae_lesson.exercises import call_learner
    with pytest.raises(NotAttempted, match=r"thing\(\[2, 3\]\): the function is still the stub"):
        call_learner(raising, "thing", torch.zeros(2, 3))
    with pytest.raises(ExerciseError, match="returned None: did you forget `return`"):
        call_learner(forgot_return, "thing", 1)
    with pytest.raises(ExerciseError, match="expected a function, got int"):
        call_learner(3, "thing")


@pytest.mark.parametrize("ok, expected, line", [
    (True, "mine", "Using your my_patchify from here on."),
    (False, "reference", "Using the reference solution from here on (your my_patchify has not passed the checker yet;"),
    (None, "reference", "Using the reference solution"),
])
def test_use_picks_mine_only_when_it_passed(ok, expected, line, capsys):
    def mine(x):
        return "mine"

    def reference(x):
        return "reference"

    fn = use("patchify", mine, reference, ok)
    assert fn(0) == expected
    assert capsys.readouterr().out.startswith(line)


def test_judge_names_the_first_known_mistake():
    from mae_lesson.exercises import Mistake, judge
    expected = torch.arange(6.0).reshape(2, 3)
    assert judge("f(x)", expected + 1e-7, expected, [], hint="h") is None
    mistakes = [Mistake("doubled", lambda case: case * 2, "doubled"),
                Mistake("sign", lambda case: -case, "the sign is flipped")]
    with pytest.raises(ExerciseError, match=r"f\(x\): expected \[0.000, 1.000, 2.000, 3.000, \.\.\.\], "
                                            r"got \[-0.000, -1.000, -2.000, -3.000, \.\.\.\]: the sign is flipped"):
        judge("f(x)", -expected, expected, mistakes, expected, hint="h")
    with pytest.raises(ExerciseError, match="values differ .* Hint: add one"):
        judge("f(x)", expected + 0.5, expected, mistakes, expected, hint="add one")
    with pytest.raises(ExerciseError, match=r"expected shape \[2, 3\], got \[3, 2\]"):
        judge("f(x)", expected.T, expected, mistakes, expected, hint="h")
