"""Shared fixtures: tiny configs (fast on a 2-core CPU) and independent reference helpers.

Everything here is computed from the paper / facebookresearch/mae definitions, never by calling
the code under test, so the tests that use it can fail. The exercise-checker helpers at the end
(``rejects``, ``accepts``, ``not_attempted``, ``raising``) are plain functions:
``from conftest import accepts, rejects``.
"""

from __future__ import annotations

import contextlib
import io
import re

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.exercises import ExerciseError

ROOT = Path(__file__).resolve().parents[1]

# The guide's configs/mae_config.yaml, typed in from the guide (not read from the package),
# plus the two course keys the package adds.
GUIDE_DEFAULTS = {
    "model_name": "mae",
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "embed_dim": 768,
    "encoder_depth": 12,
    "encoder_num_heads": 12,
    "decoder_embed_dim": 512,
    "decoder_depth": 8,
    "decoder_num_heads": 16,
    "mlp_ratio": 4.0,
    "mask_ratio": 0.75,
    "norm_pix_loss": True,
    "mask_type": "random",
    "grad_checkpointing": False,
}

# 32x32 RGB, 4x4 patches: an 8x8 grid of 64 patches, 16 kept at mask_ratio 0.75.
TINY = {
    "img_size": 32,
    "patch_size": 4,
    "in_chans": 3,
    "embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 4,
    "decoder_embed_dim": 32,
    "decoder_depth": 1,
    "decoder_num_heads": 4,
    "mlp_ratio": 4.0,
    "mask_ratio": 0.75,
    "norm_pix_loss": True,
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_dict() -> dict:
    return dict(TINY)


@pytest.fixture
def tiny_config() -> Config:
    return Config(TINY)


@pytest.fixture
def tiny_model(tiny_config) -> MAE:
    torch.manual_seed(0)
    return MAE(tiny_config)


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def block_param_count(dim: int, mlp_ratio: float) -> int:
    """timm/official ViT block: 2 LayerNorms, fused qkv, proj, 2-layer MLP (all with biases)."""
    hidden = int(dim * mlp_ratio)
    norms = 2 * (2 * dim)
    attn = (dim * 3 * dim + 3 * dim) + (dim * dim + dim)
    mlp = (dim * hidden + hidden) + (hidden * dim + dim)
    return norms + attn + mlp


def expected_param_count(cfg: dict) -> int:
    """Trainable parameters of the official MAE (the sin-cos tables are frozen, not counted)."""
    c = {**GUIDE_DEFAULTS, **cfg}
    d, dd, p, ch = c["embed_dim"], c["decoder_embed_dim"], c["patch_size"], c["in_chans"]
    encoder = (ch * p * p * d + d) + d + c["encoder_depth"] * block_param_count(d, c["mlp_ratio"]) + 2 * d
    decoder = (
        (d * dd + dd) + dd + c["decoder_depth"] * block_param_count(dd, c["mlp_ratio"]) + 2 * dd
        + (dd * p * p * ch + p * p * ch)
    )
    return encoder + decoder


def official_state_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Key -> shape of facebookresearch/mae ``MaskedAutoencoderViT.state_dict()``, written out by hand."""
    c = {**GUIDE_DEFAULTS, **cfg}
    d, dd, p, ch = c["embed_dim"], c["decoder_embed_dim"], c["patch_size"], c["in_chans"]
    h, w = (c["img_size"], c["img_size"]) if isinstance(c["img_size"], int) else c["img_size"]
    num_patches = (h // p) * (w // p)

    def block(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
        hidden = int(dim * c["mlp_ratio"])
        return {
            f"{prefix}.norm1.weight": (dim,), f"{prefix}.norm1.bias": (dim,),
            f"{prefix}.attn.qkv.weight": (3 * dim, dim), f"{prefix}.attn.qkv.bias": (3 * dim,),
            f"{prefix}.attn.proj.weight": (dim, dim), f"{prefix}.attn.proj.bias": (dim,),
            f"{prefix}.norm2.weight": (dim,), f"{prefix}.norm2.bias": (dim,),
            f"{prefix}.mlp.fc1.weight": (hidden, dim), f"{prefix}.mlp.fc1.bias": (hidden,),
            f"{prefix}.mlp.fc2.weight": (dim, hidden), f"{prefix}.mlp.fc2.bias": (dim,),
        }

    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, num_patches + 1, d),
        "patch_embed.proj.weight": (d, ch, p, p),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,), "norm.bias": (d,),
        "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,),
        "mask_token": (1, 1, dd),
        "decoder_pos_embed": (1, num_patches + 1, dd),
        "decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,),
        "decoder_pred.weight": (p * p * ch, dd), "decoder_pred.bias": (p * p * ch,),
    }
    for i in range(c["encoder_depth"]):
        shapes.update(block(f"blocks.{i}", d))
    for i in range(c["decoder_depth"]):
        shapes.update(block(f"decoder_blocks.{i}", dd))
    return shapes


def official_patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """facebookresearch/mae ``patchify``, generalised from 3 channels / square to any C, H, W."""
    n, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def official_loss(imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, p: int, norm_pix_loss: bool) -> torch.Tensor:
    """facebookresearch/mae ``forward_loss``, inline."""
    target = official_patchify(imgs, p)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def official_random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor):
    """facebookresearch/mae ``random_masking`` with the noise passed in."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, D))
    mask = torch.ones([N, L], device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return x_masked, mask, ids_restore


def np_1d_sincos(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """facebookresearch/mae ``get_1d_sincos_pos_embed_from_grid`` (util/pos_embed.py), in NumPy."""
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega  # (D/2,)
    pos = pos.reshape(-1)  # (M,)
    out = np.einsum("m,d->md", pos, omega)  # (M, D/2), outer product
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)  # (M, D)


def np_2d_sincos(embed_dim: int, grid_size, cls_token: bool = False) -> np.ndarray:
    """facebookresearch/mae ``get_2d_sincos_pos_embed``, with a (grid_h, grid_w) pair allowed.

    Keeps the official ``np.meshgrid(grid_w, grid_h)`` quirk: ``grid[0]`` holds the column
    index, and it is encoded into the *first* half of the channels.
    """
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    grid_h = np.arange(gh, dtype=np.float32)
    grid_w = np.arange(gw, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, gh, gw])
    emb_h = np_1d_sincos(embed_dim // 2, grid[0])  # (H*W, D/2)
    emb_w = np_1d_sincos(embed_dim // 2, grid[1])  # (H*W, D/2)
    pos_embed = np.concatenate([emb_h, emb_w], axis=1)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


@pytest.fixture
def reference():
    """The independent reference helpers above, for test modules."""

    class Ref:
        param_count = staticmethod(expected_param_count)
        state_shapes = staticmethod(official_state_shapes)
        patchify = staticmethod(official_patchify)
        loss = staticmethod(official_loss)
        random_masking = staticmethod(official_random_masking)
        sincos_2d = staticmethod(np_2d_sincos)
        guide_defaults = GUIDE_DEFAULTS
        tiny = TINY

    return Ref


# ------------------------------------------------------------------------- exercise checkers
def rejects(checker, fn, *phrases: str) -> str:
    """Assert ``checker(fn)`` returns False and prints, without raising, a "Not correct:" verdict whose
    message has expected/got (or a raised exception) and every phrase; also that it never says "Correct"
    and tells the learner how the notebook goes on. Returns the printed text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = checker(fn)
    printed = out.getvalue()
    assert result is False, f"the checker returned {result!r}: {printed}"
    verdicts = [line for line in printed.splitlines() if line.startswith(("Correct:", "Not attempted yet", "Not correct:"))]
    assert len(verdicts) == 1 and verdicts[0].startswith("Not correct: "), printed
    assert ("expected" in printed and "got" in printed) or " raised " in printed or "returned None" in printed, printed
    assert "The notebook goes on with the reference solution" in printed, printed
    for phrase in phrases:
        assert phrase in printed, f"{phrase!r} not in: {printed}"
    translated(printed)
    return printed


def accepts(checker, fn, capsys) -> None:
    """Assert ``checker(fn)`` returns True and prints the success line."""
    assert checker(fn) is True
    printed = capsys.readouterr().out
    assert printed.startswith("Correct: ")
    translated(printed)


def not_attempted(checker, fn, capsys, name: str) -> None:
    """Assert ``checker(fn)`` reports ``my_<name>`` as not attempted: one line printed, False, no exception."""
    assert checker(fn) is False
    assert capsys.readouterr().out == (
        f"Not attempted yet: write my_{name} above, or open the reference solution below.\n")


def translated(printed: str) -> str:
    """Assert that every line a checker printed has its Chinese in mae_lesson/exercises/locale/zh.po
    (a learner's traceback lines excepted); return the Chinese. With $MAE_LESSON_I18N_MISSING naming a
    file, the untranslated messages are appended to it instead (the translators' worklist)."""
    from mae_lesson.exercises._i18n import _VERBATIM, translate

    missing: list[str] = []
    chinese = translate(printed, "zh", missing)
    # English that a general frame ("{name}: expected {expected}, got {got}") let through inside a value:
    # three words in a row, outside quoted code, a learner's traceback and the text of their exception
    missing += [line for line in chinese.splitlines() if not _VERBATIM.match(line)
                and re.search(r"[A-Za-z]{2,}(?: [A-Za-z]{2,}){2,}", re.sub(r"`[^`]*`|'[^']*'|抛出了.*", "", line))]
    worklist = os.environ.get("MAE_LESSON_I18N_MISSING")
    if worklist:
        with open(worklist, "a", encoding="utf-8") as out:
            out.writelines(f"{m}\n" for m in missing)
        return chinese
    assert not missing, f"no Chinese in mae_lesson/exercises/locale/zh.po for {missing} (in: {printed})"
    return chinese


def raising(*args):
    """A learner's untouched stub that raises instead of returning None."""
    raise NotImplementedError("your code")


# ------------------------------------------------------------------------------ tiny pretraining runs
from mae_lesson.data import DEBIAN_FASHION_MNIST  # noqa: E402
from mae_lesson.pretrain import PretrainArgs  # noqa: E402

TINY_RUN = {"embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2, "decoder_embed_dim": 32,
        "decoder_depth": 1, "decoder_num_heads": 2}
TINY_FLAGS = [f"--set={k}={v}" for k, v in TINY_RUN.items()]

needs_fmnist = pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                                  reason="dataset-fashion-mnist not installed (scripts/setup.sh installs it)")


def tiny_args(out: Path, **changes) -> PretrainArgs:
    base = dict(overrides=TINY_RUN, train_images=512, batch_size=64, epochs=2, warmup_epochs=0.5, out=str(out),
                ckpt_every_steps=3, log_every_steps=2, progress=False, num_figure_images=4, blr=1e-3)
    return PretrainArgs(**{**base, **changes})


def cli(out: Path, *extra: str) -> list[str]:
    return ["-m", "mae_lesson.pretrain", "--train-images", "512", "--batch-size", "64", "--epochs", "2",
            "--warmup-epochs", "0.5", "--blr", "1e-3", "--out", str(out), "--ckpt-every-steps", "3",
            "--log-every-steps", "2", "--no-progress", "--num-figure-images", "4", *TINY_FLAGS, *extra]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
