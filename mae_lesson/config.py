"""Model configuration: a validated dict with attribute access, loaded from YAML.

``Config.from_file`` takes a YAML path or the name of a config bundled in
``mae_lesson/configs`` (``mae_config``, ``mae_base``, ``mae_large``, ``mae_huge``,
``fashion_mnist_tiny``, ``cifar_tiny``). Missing keys take the guide's ``mae_config.yaml``
values, so ``Config({"embed_dim": 384, ...})`` is a complete config.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .masking import MASK_TYPES

# The guide's configs/mae_config.yaml, plus the course's two extra model keys.
DEFAULTS: dict[str, Any] = {
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
# Keys that describe the data a model was trained on; optional, never validated as model keys.
METADATA_KEYS = ("norm_mean", "norm_std", "dataset", "description")
# The type each key must have. Nothing is converted from a string: "4" or "no" in YAML is refused,
# so a quoted value never silently means something else (a non-empty string is "true" in Python).
BOOL_KEYS = ("norm_pix_loss", "grad_checkpointing")
INT_KEYS = ("patch_size", "in_chans", "embed_dim", "encoder_depth", "encoder_num_heads", "decoder_embed_dim",
            "decoder_depth", "decoder_num_heads")
NUMBER_KEYS = ("mlp_ratio", "mask_ratio")
STR_KEYS = ("model_name", "mask_type", "dataset", "description")
PER_CHANNEL_KEYS = ("norm_mean", "norm_std")


def bundled_names(folder: str = "configs") -> list[str]:
    """Names of the YAML files shipped in ``mae_lesson/<folder>`` (``configs`` or ``configs/recipes``)."""
    shipped = resources.files("mae_lesson").joinpath(*folder.split("/"))
    return sorted(p.name[: -len(".yaml")] for p in shipped.iterdir() if p.name.endswith(".yaml"))


def bundled_config_names() -> list[str]:
    """Names of the YAML configs shipped inside the package."""
    return bundled_names("configs")


def recipe_names() -> list[str]:
    """Names of the training recipes shipped in ``mae_lesson/configs/recipes``."""
    return bundled_names("configs/recipes")


def bundled_file(path_or_name: str | Path, folder: str, what: str) -> Path:
    """A YAML file on disk wins; otherwise the file of ``mae_lesson/<folder>`` named by the path's stem.

    ``what`` names the kind of file in the error (``config``, ``recipe``), which lists the bundled names.
    """
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    bundled = resources.files("mae_lesson").joinpath(*folder.split("/"), f"{name}.yaml")
    if bundled.is_file():
        return Path(str(bundled))
    raise FileNotFoundError(
        f"No {what} file {str(path_or_name)!r} and no bundled {what} named {name!r}. "
        f"Give a YAML path or one of: {', '.join(bundled_names(folder))}."
    )


def load_mapping(path_or_name: str | Path, folder: str, what: str) -> dict[str, Any]:
    """The YAML mapping of a file on disk or a bundled one (:func:`bundled_file`); an empty file is ``{}``."""
    path = bundled_file(path_or_name, folder, what)
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a YAML mapping of names to values, got "
                         f"{type(values).__name__}")
    return values


def load_recipe(path_or_name: str | Path) -> dict[str, Any]:
    """A training recipe (the values of ``PretrainArgs`` or ``FinetuneArgs`` it sets), from a YAML
    path or the name of a bundled recipe (``pretrain_cpu``, ``finetune_table``, ``finetune_short``)."""
    return load_mapping(path_or_name, "configs/recipes", "recipe")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_hw(value: Any, key: str) -> tuple[int, int]:
    if _is_int(value) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{key} must be a positive int or a pair [H, W] of positive ints, got {value!r}")


def _quoted_hint(key: str, value: Any) -> str:
    return f"; write it without quotes ({key}: {value})" if isinstance(value, str) else ""


def check_types(values: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for a value of the wrong type: booleans are booleans, numbers numbers."""
    for key in BOOL_KEYS:
        if key in values and not isinstance(values[key], bool):
            raise ValueError(f"{key} must be true or false, got {values[key]!r}")
    for key in INT_KEYS:
        if key in values and not _is_int(values[key]):
            raise ValueError(f"{key} must be a whole number, got {values[key]!r}{_quoted_hint(key, values[key])}")
    for key in NUMBER_KEYS:
        if key in values and not _is_number(values[key]):
            raise ValueError(f"{key} must be a number, got {values[key]!r}{_quoted_hint(key, values[key])}")
    for key in STR_KEYS:
        if key in values and not isinstance(values[key], str):
            raise ValueError(f"{key} must be a string, got {values[key]!r}")
    for key in PER_CHANNEL_KEYS:
        if key in values and not (isinstance(values[key], (list, tuple)) and all(_is_number(v) for v in values[key])):
            raise ValueError(f"{key} must be a list of numbers, one per channel, got {values[key]!r}")


class Config(dict):
    """A model config: a plain dict (YAML- and checkpoint-friendly) with attribute access.

    Unknown keys are refused with the closest valid key suggested; values are checked so a
    bad config fails here, not as a shape error three calls deep.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        if values is not None and not isinstance(values, Mapping):
            raise ValueError(f"a config must be a mapping of config keys to values, got a {type(values).__name__} "
                             f"({str(values)[:60]})")
        merged = dict(DEFAULTS)
        merged.update(dict(values or {}))
        merged.update(overrides)
        for key in PER_CHANNEL_KEYS:  # one channel: a bare number means [number]
            if _is_number(merged.get(key)) and merged.get("in_chans") == 1:
                merged[key] = [merged[key]]
        super().__init__(merged)
        self.validate()

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"Config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    @classmethod
    def from_file(cls, path_or_name: str | Path) -> "Config":
        """Load a YAML path, or a bundled config by name (``'mae_base'``, ``'configs/mae_config.yaml'``)."""
        return cls(load_mapping(path_or_name, "configs", "config"))

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy (what ``MAE(...)`` and checkpoints take)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.items()}

    def replace(self, **changes: Any) -> "Config":
        """A new validated config with some keys changed."""
        return Config({**self, **changes})

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width) at the configured ``img_size``."""
        h, w = _as_hw(self["img_size"], "img_size")
        return h // self["patch_size"], w // self["patch_size"]

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad key and how to fix it."""
        valid = set(DEFAULTS) | set(METADATA_KEYS)
        for key in self:
            if key not in valid:
                close = difflib.get_close_matches(key, sorted(valid), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
                raise ValueError(f"Unknown config key {key!r}{hint}")
        check_types(self)
        p = self["patch_size"]
        if p < 1:
            raise ValueError(f"patch_size must be a positive int, got {p!r}")
        for side, size in zip(("height", "width"), _as_hw(self["img_size"], "img_size")):
            if size % p:
                lower, upper = size - size % p, size - size % p + p
                raise ValueError(
                    f"img_size {size} ({side}) is not divisible by patch_size {p}; "
                    f"choose img_size {lower or upper} or {upper}, or another patch_size"
                )
        for width_key, heads_key, depth_key in (
            ("embed_dim", "encoder_num_heads", "encoder_depth"),
            ("decoder_embed_dim", "decoder_num_heads", "decoder_depth"),
        ):
            width, heads, depth = self[width_key], self[heads_key], self[depth_key]
            if not isinstance(depth, int) or depth < 1:
                raise ValueError(f"{depth_key} must be an int >= 1, got {depth!r}")
            if not isinstance(heads, int) or heads < 1:
                raise ValueError(f"{heads_key} must be an int >= 1, got {heads!r}")
            if not isinstance(width, int) or width % heads:
                raise ValueError(
                    f"{width_key} {width} is not divisible by {heads_key} {heads}; "
                    f"each head needs an equal share of the width"
                )
            if width % 4:
                raise ValueError(
                    f"{width_key} {width} is not divisible by 4: the 2-D sin-cos position table "
                    f"splits the width into sin and cos halves for rows and columns; use a multiple of 4"
                )
        ratio = self["mask_ratio"]
        if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1) (0.75 in the paper), got {ratio!r}")
        if self["mask_type"] not in MASK_TYPES:
            raise ValueError(f"mask_type {self['mask_type']!r} is unknown; choose one of {', '.join(MASK_TYPES)}")
        if self["in_chans"] < 1 or self["mlp_ratio"] <= 0:
            raise ValueError("in_chans must be >= 1 and mlp_ratio > 0")
        patches = self.grid_size[0] * self.grid_size[1]
        if int(patches * (1 - ratio)) < 1:
            raise ValueError(
                f"mask_ratio {ratio} keeps int({patches} x {1 - ratio:.3g}) = 0 of the {patches} patches: the encoder "
                f"would see nothing; use a mask_ratio of at most 1 - 1/{patches} = {1 - 1 / patches:.4g}")
        for key in PER_CHANNEL_KEYS:
            if key in self and len(self[key]) != self["in_chans"]:
                raise ValueError(f"{key} needs one value per channel ({self['in_chans']}), got {self[key]!r}")
