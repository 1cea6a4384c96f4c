"""mae_lesson.config: loading, defaults, attribute access and actionable validation errors."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest
import yaml

from mae_lesson import MAE, Config, bundled_config_names

BUNDLED = ["cifar_tiny", "fashion_mnist_p7", "fashion_mnist_tiny", "mae_base", "mae_config", "mae_huge", "mae_large"]


def _bundled_yaml(name: str) -> dict:
    text = (resources.files("mae_lesson") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_bundled_config_names():
    assert set(BUNDLED) <= set(bundled_config_names())


@pytest.mark.parametrize("name", BUNDLED)
def test_from_file_by_bundled_name(name, reference):
    cfg = Config.from_file(name)
    assert isinstance(cfg, Config)
    assert dict(cfg) == {**reference.guide_defaults, **_bundled_yaml(name)}


def test_mae_config_yaml_is_the_guide_config(reference):
    # The guide's YAML block, key for key (defaults typed in from the guide, not read from the package).
    assert dict(Config.from_file("mae_config")) == reference.guide_defaults


def test_guide_literal_path_resolves_to_bundled_when_absent(tmp_path, monkeypatch, reference):
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "configs").exists()
    cfg = Config.from_file("configs/mae_config.yaml")
    assert dict(cfg) == reference.guide_defaults


def test_guide_literal_path_prefers_file_in_cwd(tmp_path, monkeypatch, reference):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mae_config.yaml").write_text("embed_dim: 64\nencoder_num_heads: 4\n")
    monkeypatch.chdir(tmp_path)
    cfg = Config.from_file("configs/mae_config.yaml")
    assert cfg.embed_dim == 64 and cfg.encoder_num_heads == 4
    assert cfg.decoder_embed_dim == reference.guide_defaults["decoder_embed_dim"]


def test_from_actual_yaml_path_missing_keys_take_guide_defaults(tmp_path, reference):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({"img_size": 32, "patch_size": 4, "embed_dim": 64, "encoder_num_heads": 4}))
    for arg in (path, str(path)):
        cfg = Config.from_file(arg)
        expected = {**reference.guide_defaults, "img_size": 32, "patch_size": 4, "embed_dim": 64, "encoder_num_heads": 4}
        assert dict(cfg) == expected


def test_constructor_merges_defaults_and_overrides(reference):
    cfg = Config({"embed_dim": 384, "encoder_num_heads": 6}, decoder_depth=2)
    assert cfg.embed_dim == 384 and cfg.encoder_num_heads == 6 and cfg.decoder_depth == 2
    for key in ("img_size", "patch_size", "mask_ratio", "norm_pix_loss", "decoder_embed_dim"):
        assert cfg[key] == reference.guide_defaults[key]
    assert dict(Config()) == reference.guide_defaults


def test_unknown_config_name_lists_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="mae_base"):
        Config.from_file("no_such_config")


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        Config.from_file(path)


def test_unknown_key_in_file_is_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("mask_ratoi: 0.5\n")
    with pytest.raises(ValueError, match="mask_ratoi.*mask_ratio"):
        Config.from_file(path)


def test_attribute_access(tiny_config):
    assert tiny_config.embed_dim == tiny_config["embed_dim"] == 32
    assert tiny_config.patch_size == 4
    with pytest.raises(AttributeError, match="no_such_key"):
        tiny_config.no_such_key
    tiny_config.mask_ratio = 0.5
    assert tiny_config["mask_ratio"] == 0.5


def test_to_dict_is_a_plain_independent_dict(tiny_config):
    d = tiny_config.to_dict()
    assert type(d) is dict
    assert d == dict(tiny_config)
    d["embed_dim"] = 999
    assert tiny_config.embed_dim == 32
    # Plain data: survives a YAML round trip.
    assert yaml.safe_load(yaml.safe_dump(tiny_config.to_dict())) == dict(tiny_config)


def test_to_dict_of_non_square_size_is_yaml_friendly():
    cfg = Config(img_size=(32, 48), patch_size=4, embed_dim=32, encoder_num_heads=4)
    d = cfg.to_dict()
    assert d["img_size"] == [32, 48]
    assert yaml.safe_load(yaml.safe_dump(d))["img_size"] == [32, 48]
    assert cfg.grid_size == (8, 12)


def test_replace_returns_validated_copy(tiny_config):
    other = tiny_config.replace(mask_ratio=0.5)
    assert other.mask_ratio == 0.5 and tiny_config.mask_ratio == 0.75
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_config.replace(mask_ratio=1.0)


@pytest.mark.parametrize(
    "values, patterns",
    [
        ({"embed_dimm": 64}, ["'embed_dimm'", "did you mean 'embed_dim'"]),
        ({"decoder_dept": 2}, ["'decoder_dept'", "'decoder_depth'"]),
        ({"img_size": 30, "patch_size": 4}, ["img_size 30", "patch_size 4", "28", "32"]),
        ({"img_size": [32, 30], "patch_size": 4}, ["30", "patch_size 4"]),
        ({"embed_dim": 30, "encoder_num_heads": 4}, ["embed_dim 30", "encoder_num_heads 4"]),
        ({"decoder_embed_dim": 36, "decoder_num_heads": 8}, ["decoder_embed_dim 36", "decoder_num_heads 8"]),
        ({"embed_dim": 30, "encoder_num_heads": 3}, ["embed_dim 30", "divisible by 4"]),
        ({"decoder_embed_dim": 18, "decoder_num_heads": 2}, ["decoder_embed_dim 18", "divisible by 4"]),
        ({"mask_ratio": 1.0}, ["mask_ratio", r"\[0, 1\)", "1.0"]),
        ({"mask_ratio": -0.1}, ["mask_ratio", "-0.1"]),
        ({"encoder_depth": 0}, ["encoder_depth", ">= 1"]),
        ({"decoder_depth": 0}, ["decoder_depth", ">= 1"]),
        ({"mask_type": "blocks"}, ["'blocks'", "random", "block", "grid"]),
    ],
)
def test_bad_values_raise_helpful_value_error(values, patterns):
    with pytest.raises(ValueError) as info:
        Config(values)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def test_valid_edge_values_are_accepted():
    Config(mask_ratio=0.0)
    Config(mask_ratio=0.95)
    Config(mask_type="block")
    Config(mask_type="grid")
    Config(embed_dim=4, encoder_num_heads=1, decoder_embed_dim=4, decoder_num_heads=1)


def test_metadata_keys_are_checked_per_channel():
    Config(in_chans=1, norm_mean=[0.5], norm_std=[0.2])
    with pytest.raises(ValueError, match="norm_mean"):
        Config(in_chans=3, norm_mean=[0.5])


@pytest.mark.parametrize(
    "values, pattern",
    [
        ({"norm_pix_loss": "nope"}, "norm_pix_loss must be true or false, got 'nope'"),
        ({"norm_pix_loss": "no"}, "norm_pix_loss must be true or false, got 'no'"),
        ({"grad_checkpointing": 1}, "grad_checkpointing must be true or false, got 1"),
        ({"mlp_ratio": "4"}, r"mlp_ratio must be a number, got '4'; write it without quotes \(mlp_ratio: 4\)"),
        ({"mask_ratio": "0.5"}, "mask_ratio must be a number"),
        ({"embed_dim": True}, "embed_dim must be a whole number, got True"),
        ({"patch_size": 4.0}, "patch_size must be a whole number"),
        ({"mask_type": 3}, "mask_type must be a string"),
        ({"img_size": [1, 2, 3]}, "img_size must be a positive int or a pair"),
        ({"norm_mean": 0.5}, r"norm_mean must be a list of numbers, one per channel, got 0.5"),
        ({"in_chans": 1, "norm_std": ["a"]}, "norm_std must be a list of numbers"),
    ],
)
def test_values_of_the_wrong_type_are_refused(values, pattern):
    with pytest.raises(ValueError, match=pattern):
        Config(values)


def test_quoted_yaml_values_are_refused_not_misread(tmp_path):
    path = tmp_path / "quoted.yaml"
    path.write_text('norm_pix_loss: "no"\n')
    with pytest.raises(ValueError, match="norm_pix_loss must be true or false"):
        Config.from_file(path)
    path.write_text("norm_pix_loss: no\nmlp_ratio: 4\n")  # YAML's unquoted no is false, 4 a number
    assert Config.from_file(path).norm_pix_loss is False and Config.from_file(path).mlp_ratio == 4


def test_a_scalar_mean_is_one_channels_list():
    cfg = Config(in_chans=1, norm_mean=0.286, norm_std=0.353)
    assert cfg.norm_mean == [0.286] and cfg.norm_std == [0.353]


def test_a_mask_ratio_that_leaves_no_visible_patch_is_refused():
    with pytest.raises(ValueError, match=r"keeps int\(16 x 0.01\) = 0 of the 16 patches.*at most 1 - 1/16 = 0.9375"):
        Config(img_size=28, patch_size=7, mask_ratio=0.99)
    assert Config(img_size=28, patch_size=7, mask_ratio=0.9375).mask_ratio == 0.9375  # keeps 1 patch


# ------------------------------------------------------------------ the typed dataclass and its mapping view
def test_config_is_a_dataclass_whose_defaults_are_the_guide_config(reference):
    defaults = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not None}
    assert defaults == reference.guide_defaults
    optional = [f.name for f in dataclasses.fields(Config) if f.default is None]
    assert optional == ["norm_mean", "norm_std", "dataset", "description"]


WRONG_BY_TYPE = {"bool": "yes", "int": 2.0, "float": "0.5", "str": 3, "list[float]": "0.5",
                 "int | tuple[int, int]": [28, 28, 28]}


@pytest.mark.parametrize("field", dataclasses.fields(Config), ids=lambda f: f.name)
def test_every_field_refuses_a_value_of_the_wrong_type(field):
    """The check reads the field's type: a new field is covered without a new list of keys."""
    wrong = WRONG_BY_TYPE[str(field.type).replace(" | None", "")]
    with pytest.raises(ValueError, match=f"^{field.name} must be "):
        Config({field.name: wrong})


def test_the_mapping_view_is_what_mae_and_checkpoints_read(tiny_config):
    cfg = tiny_config.replace(norm_mean=[0.5], norm_std=[0.25], in_chans=1)
    plain = cfg.to_dict()
    assert list(cfg) == list(cfg.keys()) == list(plain) and len(cfg) == len(plain) == 17
    assert dict(cfg) == {**cfg} == plain == cfg and cfg == Config(plain)
    assert "norm_mean" in cfg and "dataset" not in cfg and cfg.get("dataset") is None and cfg.dataset is None
    with pytest.raises(KeyError):
        cfg["dataset"]
    assert dict(cfg.items())["norm_std"] == [0.25]
    from_dict, from_config = MAE(plain), MAE(cfg)
    assert from_dict.config == from_config.config == cfg
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (from_dict, from_config)]
    assert shapes[0] == shapes[1]


def test_a_change_is_checked_and_a_refused_one_leaves_the_config_as_it_was(tiny_config):
    tiny_config["mask_ratio"] = 0.5
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        tiny_config.mask_ratio = 1.0
    with pytest.raises(ValueError, match="did you mean 'embed_dim'"):
        tiny_config["embed_dimm"] = 64
    with pytest.raises(ValueError, match="embed_dim must be a whole number"):
        tiny_config["embed_dim"] = "64"
    assert tiny_config.mask_ratio == 0.5 and tiny_config.embed_dim == 32
