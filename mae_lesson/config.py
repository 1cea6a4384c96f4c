"""Model configuration: a validated dataclass in nanoGPT's style, loaded from YAML, read as a mapping.

Each model key is a typed field whose default is the guide's ``mae_config.yaml`` value, so ``Config({"embed_dim":
384, ...})`` is complete. ``Config.from_file`` takes a YAML path or a config bundled in ``mae_lesson/configs``
(``mae_config``, ``mae_base``, ``mae_large``, ``mae_huge``, ``fashion_mnist_tiny``, ``cifar_tiny``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from .bundled import load_mapping
from .masking import MASK_TYPES


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hw(value: Any) -> tuple[int, int] | None:
    """``img_size`` as (height, width), or ``None`` when it is neither a positive int nor a pair of them."""
    pair = (value, value) if _is_int(value) else value
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_int(v) and v > 0 for v in pair):
        return int(pair[0]), int(pair[1])
    return None


# What a value of each field type must be. Nothing is converted: "4" or "no" in YAML is refused, not misread.
_TYPES: dict[Any, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (_is_int, "a whole number"),
    float: (_is_number, "a number"),  # an int is a float's value too (YAML's 4 for 4.0)
    str: (lambda v: isinstance(v, str), "a string"),
    list[float]: (lambda v: isinstance(v, (list, tuple)) and all(map(_is_number, v)),
                  "a list of numbers, one per channel"),
    int | tuple[int, int]: (lambda v: _hw(v) is not None, "a positive int or a pair [H, W] of positive ints"),
}


@dataclass(init=False, eq=False)  # __init__ takes a mapping; == is Mapping's, so a Config equals its dict
class Config(Mapping):
    """A model config: one typed field per key, checked on creation and on every change.

    ``Config(values, **overrides)``: missing keys take the defaults below; an unknown key is refused with
    the closest valid key suggested; a bad value fails here with its fix, not as a shape error three calls deep.
    """

    model_name: str = "mae"
    img_size: int | tuple[int, int] = 224  # or [H, W]
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    mask_type: str = "random"
    grad_checkpointing: bool = False
    # The data a model was trained on (pretraining records it): optional, absent while None.
    norm_mean: list[float] | None = None  # one per channel
    norm_std: list[float] | None = None
    dataset: str | None = None
    description: str | None = None

    def __init__(self, values: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        if values is not None and not isinstance(values, Mapping):
            raise ValueError(f"a config must be a mapping of config keys to values, got a {type(values).__name__} "
                             f"({str(values)[:60]})")
        merged = {**(values or {}), **overrides}
        for key in merged:
            if key not in FIELD_TYPES:
                close = difflib.get_close_matches(key, sorted(FIELD_TYPES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(FIELD_TYPES))}"
                raise ValueError(f"Unknown config key {key!r}{hint}")
        for f in fields(self):
            object.__setattr__(self, f.name, merged.get(f.name, f.default))
        for key in ("norm_mean", "norm_std"):  # one channel: a bare number means [number]
            if _is_number(getattr(self, key)) and self.in_chans == 1:
                object.__setattr__(self, key, [getattr(self, key)])
        self.validate()

    def __setattr__(self, key: str, value: Any) -> None:
        """``cfg.key = value`` (or ``cfg[key] = value``) keeps the config valid: the change is checked first."""
        object.__setattr__(self, key, getattr(self.replace(**{key: value}), key))

    __setitem__ = __setattr__

    # The mapping view (cfg["embed_dim"], dict(cfg), **cfg): every model key, the data keys that are set.
    def __getitem__(self, key: str) -> Any:
        if key in FIELD_TYPES and getattr(self, key) is not None:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self) if getattr(self, f.name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def from_file(cls, path_or_name: str | Path) -> "Config":
        """Load a YAML path, or a bundled config by name (``'mae_base'``, ``'configs/mae_config.yaml'``)."""
        return cls(load_mapping(path_or_name, "configs", "config"))

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy, lists for pairs (what ``MAE(...)``, YAML and checkpoints take)."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.items()}

    def replace(self, **changes: Any) -> "Config":
        """A new validated config with some keys changed."""
        return Config(self, **changes)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width) at the configured ``img_size``."""
        h, w = _hw(self.img_size)
        return h // self.patch_size, w // self.patch_size

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad key and how to fix it."""
        _check_types(self)
        p = self.patch_size
        if p < 1:
            raise ValueError(f"patch_size must be a positive int, got {p!r}")
        for side, size in zip(("height", "width"), _hw(self.img_size)):
            if size % p:
                lower, upper = size - size % p, size - size % p + p
                raise ValueError(f"img_size {size} ({side}) is not divisible by patch_size {p}; "
                                 f"choose img_size {lower or upper} or {upper}, or another patch_size")
        for width_key, heads_key, depth_key in (("embed_dim", "encoder_num_heads", "encoder_depth"),
                                                ("decoder_embed_dim", "decoder_num_heads", "decoder_depth")):
            width, heads, depth = self[width_key], self[heads_key], self[depth_key]
            if depth < 1 or heads < 1:
                name, value = (depth_key, depth) if depth < 1 else (heads_key, heads)
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
            if width % heads:
                raise ValueError(f"{width_key} {width} is not divisible by {heads_key} {heads}; "
                                 f"each head needs an equal share of the width")
            if width % 4:
                raise ValueError(f"{width_key} {width} is not divisible by 4: the 2-D sin-cos position table splits "
                                 f"the width into sin and cos halves for rows and columns; use a multiple of 4")
        ratio = self.mask_ratio
        if not 0 <= ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1) (0.75 in the paper), got {ratio!r}")
        if self.mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type {self.mask_type!r} is unknown; choose one of {', '.join(MASK_TYPES)}")
        if self.in_chans < 1 or self.mlp_ratio <= 0:
            raise ValueError("in_chans must be >= 1 and mlp_ratio > 0")
        patches = self.grid_size[0] * self.grid_size[1]
        if int(patches * (1 - ratio)) < 1:
            raise ValueError(
                f"mask_ratio {ratio} keeps int({patches} x {1 - ratio:.3g}) = 0 of the {patches} patches: the encoder "
                f"would see nothing; use a mask_ratio of at most 1 - 1/{patches} = {1 - 1 / patches:.4g}")
        for key in ("norm_mean", "norm_std"):
            if key in self and len(self[key]) != self.in_chans:
                raise ValueError(f"{key} needs one value per channel ({self.in_chans}), got {self[key]!r}")


# Each field's type, read once; ``list[float] | None`` is ``list[float]`` (None: the key is absent).
FIELD_TYPES: dict[str, Any] = {name: get_args(kind)[0] if type(None) in get_args(kind) else kind
                               for name, kind in get_type_hints(Config).items()}
# Keys that describe the data a model was trained on; optional, never compared as model keys.
METADATA_KEYS = tuple(f.name for f in fields(Config) if f.default is None)


def _check_types(cfg: Config) -> None:
    """Refuse a value that is not of its field's type; a quoted number gets the fix in the message."""
    for f in fields(cfg):
        value, kind = getattr(cfg, f.name), FIELD_TYPES[f.name]
        accepts, must_be = _TYPES[kind]
        if not accepts(value) and not (value is None and f.default is None):  # None: an optional key left out
            quoted = isinstance(value, str) and kind in (int, float)
            raise ValueError(f"{f.name} must be {must_be}, got {value!r}"
                             + (f"; write it without quotes ({f.name}: {value})" if quoted else ""))

