"""Your MAE, carried forward: passed functions are kept in my_mae/ and notebook 05 assembles them."""

from __future__ import annotations

import linecache

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.exercises import CHOSEN, use
from mae_lesson.exercises import carry
from mae_lesson.exercises.assembly import patchify as reference_patchify


def cell(source: str, name: str) -> dict:
    """Run ``source`` as a notebook cell does: a file name whose lines linecache knows (as IPython registers them)."""
    filename = f"<notebook cell {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - a test's own cell
    return namespace


PATCHIFY_CELL = '''import builtins
CALLS = builtins.__dict__.setdefault("CARRY_TEST_CALLS", [])


def _rows(imgs, p):  # a helper in the same cell comes along
    n, c, h, w = imgs.shape
    return imgs.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)


def my_patchify(imgs, p):
    CALLS.append("patchify")
    x = _rows(imgs, p)
    return x.reshape(x.shape[0], -1, p * p * imgs.shape[1])
'''

ENCODER_CELL = '''def my_forward_encoder(model, imgs, mask_ratio, noise):
    x = model.patch_embed(imgs) + model.pos_embed[:, 1:, :]
    x, mask, ids_restore = random_masking(x, mask_ratio, noise)  # the learner's 02 piece, if kept
    cls = (model.cls_token + model.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x), mask, ids_restore
'''


@pytest.fixture
def my_mae(tmp_path, monkeypatch):
    monkeypatch.setenv("MAE_LESSON_MY_MAE", str(tmp_path / "my_mae"))
    return tmp_path / "my_mae"


def test_a_passed_function_is_kept_and_comes_back(my_mae, capsys):
    ns = cell(PATCHIFY_CELL, "patchify")
    use("patchify", ns["my_patchify"], reference_patchify, True)
    assert "kept for later notebooks in" in capsys.readouterr().out
    assert (my_mae / "patchify.py").is_file()
    back = carry.mine("patchify")  # as a new kernel would: from the file, not this namespace
    assert back is not None and back is not ns["my_patchify"]
    imgs = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(back(imgs, 4), reference_patchify(imgs, 4))
    assert carry.piece("patchify") is not reference_patchify


def test_nothing_is_kept_until_it_passes(my_mae, capsys):
    ns = cell(PATCHIFY_CELL, "patchify-failed")
    use("patchify", ns["my_patchify"], reference_patchify, False)
    assert not my_mae.exists()
    assert carry.mine("patchify") is None and carry.piece("patchify") is reference_patchify


def test_a_kept_file_that_no_longer_runs_falls_back(my_mae):
    my_mae.mkdir()
    (my_mae / "patchify.py").write_text("def my_patchify(imgs, p):\n    return undefined_name\nraise ValueError('broken')\n")
    assert carry.piece("patchify") is reference_patchify


def test_05_assembles_the_learners_pieces_and_says_which(my_mae, capsys, tiny_model, tiny_images):
    use("patchify", cell(PATCHIFY_CELL, "p2")["my_patchify"], reference_patchify, True)
    use("forward_encoder", cell(ENCODER_CELL, "enc")["my_forward_encoder"], print, True)
    capsys.readouterr()
    CHOSEN["mae_loss"] = False
    forward = carry.assemble_mae_forward(mae_loss=carry.REFERENCES["mae_loss"])
    printed = capsys.readouterr().out
    assert forward.yours == ["patchify", "forward_encoder"], printed
    assert "forward_decoder  the reference" in printed and "patchify         yours" in printed
    assert forward.whose == "2 of your 4 MAE pieces (the reference for the rest)"
    noise = torch.rand(tiny_images.shape[0], tiny_model.patch_embed.num_patches)
    import builtins
    before = len(builtins.__dict__.get("CARRY_TEST_CALLS", []))
    loss, pred, mask = forward(tiny_model, tiny_images, noise)
    assert len(builtins.CARRY_TEST_CALLS) > before  # the kept patchify ran
    torch.testing.assert_close(loss, tiny_model(tiny_images, noise=noise)["loss"])
    loss.backward()  # it trains: gradients flow through the learner's pieces
    assert tiny_model.patch_embed.proj.weight.grad is not None


def test_outside_a_notebook_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MAE_LESSON_MY_MAE", raising=False)
    monkeypatch.chdir(tmp_path)
    use("patchify", cell(PATCHIFY_CELL, "p3")["my_patchify"], reference_patchify, True)
    assert capsys.readouterr().out == "Using your my_patchify from here on.\n"
    assert not (tmp_path / "my_mae").exists()
