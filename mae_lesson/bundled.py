"""The YAML files shipped inside the package, by name or by path: model configs (``mae_lesson/configs``)
and training recipes (``mae_lesson/configs/recipes``). A file on disk always wins over a bundled name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


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
