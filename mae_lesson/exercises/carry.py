"""Your MAE, carried forward: a function that passed its checker is kept for later notebooks.

Each notebook runs in its own kernel, so ``my_patchify`` from notebook 01 is gone in notebook 05.
When a use cell picks the learner's function (it passed its checker), :func:`save` (in :mod:`._kept`) writes the
cell that defined it to ``my_mae/<name>.py`` beside the notebooks (``$MAE_LESSON_MY_MAE`` moves the
folder). A plain folder of Python files survives a kernel restart and works on Colab (it sits in
the clone). It always holds the last version that passed.

:func:`piece` loads one back, or the reference when there is none (or it no longer imports), and
:func:`assemble_mae_forward` builds notebook 05's whole forward pass from the pieces of 01-05,
saying which are the learner's. Inside a saved file, the names ``patchify``, ``random_masking``,
``unshuffle``, ``forward_encoder``, ``forward_decoder``, ``normalize_patches`` and ``mae_loss``
are the learner's own pieces where they exist, so a ``forward_encoder`` that calls
``random_masking`` runs the learner's notebook-02 answer.
"""

from __future__ import annotations

from typing import Any, Callable

from . import assembly
from ._feedback import CHOSEN
from ._i18n import say
from ._kept import PIECES, folder, mine, save  # noqa: F401 - the file half, importable from here as before

# The pieces notebook 05 composes, with the reference each falls back to.
REFERENCES: dict[str, Callable[..., Any]] = {name: getattr(assembly, name) for name in PIECES}


def piece(name: str) -> Callable[..., Any]:
    """The learner's saved ``my_<name>`` if there is one that loads, else the reference piece."""
    return mine(name) or REFERENCES[name]


def lazy_piece(name: str) -> Callable[..., Any]:
    """:func:`piece`, looked up at the first call: saved files that name each other load only what runs."""
    found: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not found:
            found.append(piece(name))
        return found[0](*args, **kwargs)

    call.__name__ = name
    return call


def assemble_mae_forward(**given: Callable[..., Any]) -> Callable[..., Any]:
    """Notebook 05's whole forward pass from the pieces of 01-05, and a printed line per piece saying whose it is.

    Args:
        given: pieces this notebook already holds (``mae_loss=mae_loss_fn``); the others come from ``my_mae/``.

    Returns:
        ``forward(model, imgs [N, C, H, W], noise [N, L]) -> (loss [], pred [N, L, p*p*C], mask [N, L])``,
        with ``forward.yours``, the names of the learner's pieces in it, and ``forward.whose``, a phrase
        for titles ("your MAE pieces", "the reference MAE pieces", "2 of your 4 MAE pieces ...").
    """
    parts, yours = {}, []
    for name in ("patchify", "forward_encoder", "forward_decoder", "mae_loss"):
        fn = given.get(name)
        if fn is not None:
            is_mine = CHOSEN.get(name, False)
        else:
            fn = mine(name)
            is_mine = fn is not None
            fn = fn or REFERENCES[name]
        parts[name] = fn
        if is_mine:
            yours.append(name)
        say(f"{name:<16} {'yours' if is_mine else 'the reference (no passed my_' + name + ' yet)'}")

    def forward(model: Any, imgs: Any, noise: Any) -> tuple[Any, Any, Any]:
        latent, mask, ids_restore = parts["forward_encoder"](model, imgs, model.mask_ratio, noise)
        pred = parts["forward_decoder"](model, latent, ids_restore)
        loss = parts["mae_loss"](parts["patchify"](imgs, model.patch_size), pred, mask, model.norm_pix_loss)
        return loss, pred, mask

    forward.yours = yours  # type: ignore[attr-defined]
    forward.whose = ("your MAE pieces" if len(yours) == len(parts) else  # type: ignore[attr-defined]
                     "the reference MAE pieces" if not yours else
                     f"{len(yours)} of your {len(parts)} MAE pieces (the reference for the rest)")
    return forward
