"""Checkpoints are data, never code: atomic saves and ``weights_only`` loads.

The model's checkpoint methods live here, not in :mod:`mae_lesson.model` (which never touches a file):
``model.save_checkpoint(path)``, ``model.load_checkpoint(path)`` and ``MAE.from_checkpoint(path)``.

Every load goes through ``torch.load(..., weights_only=True)``. The official MAE pretraining
checkpoints also carry an ``argparse.Namespace`` (their command-line args); that single type is
allow-listed. A file that needs anything else to unpickle is refused before any of it runs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import Config
from .model import MAE

# The only non-tensor type a trusted MAE checkpoint needs (official 'args').
ALLOWED_GLOBALS = [argparse.Namespace]


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file intact: rename is atomic on POSIX and Windows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``, with errors a learner can act on.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: the file needs a type that could run code; nothing was run.
        ValueError: the file is not a readable PyTorch checkpoint (truncated, corrupt, other format), or its
            model weights are not all tensors, or not all finite (a run that diverged).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist; check the path (cwd is {os.getcwd()})")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_checkpoint(path):
            raise ValueError(f"Could not read checkpoint {str(path)!r}: it is not a PyTorch file (corrupt or another format)") from None
        lines = str(exc).splitlines()
        blocked = next((line.strip() for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")
        raise pickle.UnpicklingError(
            f"Refused to load {str(path)!r}: it needs a Python object that is not plain data to "
            f"unpickle, and unpickling it could run arbitrary code. Nothing from the file was run. "
            f"If you trust and wrote this file, re-save its state_dict. Blocked: {blocked}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"Could not read checkpoint {str(path)!r}: it is truncated, corrupt or not a PyTorch "
            f"file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    _check_weights(checkpoint, path)
    return checkpoint


def nonfinite_weights(state: Mapping[str, Any]) -> str | None:
    """``"NaN or Inf in <names>"`` for the floating-point tensors of ``state`` that hold one; ``None`` if all finite."""
    bad = [name for name, value in state.items() if isinstance(value, torch.Tensor) and value.is_floating_point()
           and value.device.type != "meta" and not bool(torch.isfinite(value).all())]
    return f"NaN or Inf in {_listed(bad)}" if bad else None


def _listed(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def config_mismatch(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> list[str]:
    """How an MAE config disagrees with the shapes of its weights, one entry per disagreement.

    Reads only the sizes the config implies (width, depth, patches, channels), never builds a model, so a
    small file whose config claims a huge model costs nothing (constant time and memory). Keys the weights
    lack are left to the full comparison.
    """
    cfg = Config(config)
    d, dd, p, c = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg["patch_size"], cfg["in_chans"]
    tokens = cfg.grid_size[0] * cfg.grid_size[1] + 1
    expected = {"cls_token": (1, 1, d), "pos_embed": (1, tokens, d), "patch_embed.proj.weight": (d, c, p, p),
                "blocks.0.mlp.fc1.weight": (int(d * cfg["mlp_ratio"]), d), "decoder_embed.weight": (dd, d),
                "mask_token": (1, 1, dd), "decoder_pos_embed": (1, tokens, dd), "decoder_pred.weight": (p * p * c, dd),
                "decoder_blocks.0.mlp.fc1.weight": (int(dd * cfg["mlp_ratio"]), dd)}
    lines = [f"{key} is {list(weights[key].shape)} in the file, {list(shape)} by the config"
             for key, shape in expected.items() if key in weights and tuple(weights[key].shape) != shape]
    for prefix, depth in (("blocks.", "encoder_depth"), ("decoder_blocks.", "decoder_depth")):
        found = len({key.split(".")[1] for key in weights if key.startswith(prefix)})
        if found != cfg[depth]:
            lines.append(f"{depth} is {cfg[depth]} by the config, {found} blocks in the file")
    return lines


def _check_weights(checkpoint: Any, path: Path) -> None:
    """Refuse model weights that are not tensors or not finite, or that disagree with the file's config."""
    weights = next((checkpoint[key] for key in ("model", "model_state_dict", "state_dict")
                    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping)), None)
    if weights is None:
        return
    wrong = [f"{name} ({type(value).__name__})" for name, value in weights.items() if not isinstance(value, torch.Tensor)]
    if wrong:
        raise ValueError(f"Checkpoint {str(path)!r} is damaged: its model weights hold values that are not tensors: "
                         f"{_listed(wrong)}; use another checkpoint")
    bad = nonfinite_weights(weights)
    if bad:
        raise ValueError(f"Checkpoint {str(path)!r} holds non-finite weights ({bad}): it comes from a run that "
                         f"diverged; use an earlier checkpoint, or retrain with a lower learning rate")
    if "config" in checkpoint and ("cls_token" in weights or "patch_embed.proj.weight" in weights):  # an MAE's
        if not isinstance(checkpoint["config"], Mapping):
            raise ValueError(f"Checkpoint {str(path)!r} is damaged: its 'config' is a {type(checkpoint['config']).__name__}, "
                             f"not a mapping of config keys; use another checkpoint")
        try:
            problems = config_mismatch(checkpoint["config"], weights)
        except ValueError as exc:
            raise ValueError(f"Checkpoint {str(path)!r} has a config that is not valid: {exc}") from None
        if problems:
            raise ValueError(f"Checkpoint {str(path)!r} does not match its own config: {_listed(problems, 3)}; "
                             f"use another checkpoint")


def _looks_like_checkpoint(path: Path) -> bool:
    """A torch zip archive (``PK``) or a pickle (protocol byte ``0x80``): worth calling unsafe, not corrupt."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return head[:1] == b"\x80" or head == b"PK"


def extract_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint: ours (``model``), the guide's
    (``model_state_dict``), Lightning-style (``state_dict``) or a bare state dict."""
    if isinstance(checkpoint, Mapping):
        for key in ("model", "model_state_dict", "state_dict"):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                return dict(checkpoint[key])
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return dict(checkpoint)
    raise ValueError("Checkpoint holds no model weights (expected a 'model' or 'model_state_dict' entry)")


def describe_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], limit: int = 8) -> str:
    """Missing keys, unexpected keys and shape mismatches, one line each ('' when they agree)."""
    lines = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"  {k}: model {list(expected[k].shape)}, checkpoint {list(found[k].shape)}"
        for k in expected
        if k in found and expected[k].shape != found[k].shape
    ]
    if missing:
        lines.append(f"missing in checkpoint ({len(missing)}): {', '.join(missing[:limit])}" + (" ..." if len(missing) > limit else ""))
    if unexpected:
        lines.append(f"not in model ({len(unexpected)}): {', '.join(unexpected[:limit])}" + (" ..." if len(unexpected) > limit else ""))
    if shapes:
        lines.append(f"shape mismatches ({len(shapes)}):")
        lines.extend(shapes[:limit])
    return "\n".join(lines)


# The keys of an MAE that only pretraining uses: the official mae_pretrain_vit_*.pth leave them out.
DECODER_PREFIXES = ("mask_token", "decoder_")


def load_encoder_checkpoint(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Load an encoder-only checkpoint (the official ``mae_pretrain_vit_*.pth``, made for fine-tuning) into an MAE.

    Every encoder weight must be in the file with this model's shape (else a ``ValueError`` lists what
    differs); the decoder's weights the file lacks stay as they are, random in a fresh model.

    Returns:
        The decoder keys left unloaded: reconstructions mean nothing until that decoder is trained.
    """
    state = extract_state_dict(safe_load(path))
    expected = model.state_dict()
    encoder = {k: v for k, v in expected.items() if not k.startswith(DECODER_PREFIXES)}
    present = {k: v for k, v in expected.items() if k in encoder or k in state}
    problem = describe_mismatch(present, state)
    if problem:
        raise ValueError(f"Checkpoint {str(path)!r} does not hold this model's encoder:\n{problem}")
    model.load_state_dict(state, strict=False)
    return [k for k in expected if k not in state]


# ----------------------------------------------------------------------------- the model's files
def save_checkpoint(model: MAE, path: str | Path, **extra: Any) -> None:
    """Atomically save ``{"model": state_dict, "config": dict, **extra}`` (loads with weights_only)."""
    atomic_save({"model": model.state_dict(), "config": model.config.to_dict(), **extra}, path)


def load_checkpoint(model: MAE, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights saved by us, by the guide's loop, or by the official code into ``model``.

    Raises a ``ValueError`` listing mismatched keys and shapes when the checkpoint is for
    another architecture. Returns the whole checkpoint (for its extra entries).
    """
    ckpt = safe_load(path)
    state = extract_state_dict(ckpt)
    expected = model.state_dict()
    problem = describe_mismatch(expected, state)
    if (strict and problem) or any(k in state and state[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(f"Checkpoint {str(path)!r} does not fit this model's architecture:\n{problem}")
    model.load_state_dict(state, strict=strict)
    return ckpt if isinstance(ckpt, dict) else {}


def from_checkpoint(cls: type[MAE], path: str | Path, map_location: str | torch.device = "cpu") -> MAE:
    """Rebuild a model of class ``cls`` from a checkpoint that carries its config (as ``save_checkpoint`` writes)."""
    ckpt = safe_load(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise ValueError(
            f"Checkpoint {str(path)!r} has no 'config' entry; build the model yourself with "
            f"MAE(config) and call model.load_checkpoint(path)"
        )
    state = extract_state_dict(ckpt)
    # Compare shapes on the meta device first (no memory): a small file whose config asks for a
    # huge model fails here, before that model is allocated.
    with torch.device("meta"):
        shell = cls(ckpt["config"])
    problem = describe_mismatch(shell.state_dict(), state)
    if problem:
        raise ValueError(f"Checkpoint {str(path)!r} does not match its own config:\n{problem}")
    model = cls(ckpt["config"])
    model.load_state_dict(state)
    return model


# The guide's names, as the model's methods (subclasses inherit them). mae_lesson/__init__.py imports this
# module, so they are there whichever module MAE is imported from.
MAE.save_checkpoint = save_checkpoint
MAE.load_checkpoint = load_checkpoint
MAE.from_checkpoint = classmethod(from_checkpoint)
