"""The engine's pieces: the training step, the mask's one owner, the encoder path, recipes, flags, FLOPs."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.classifier import ViTClassifier
from mae_lesson.cli import check_recipe
from mae_lesson.bundled import load_recipe, recipe_names
from mae_lesson.finetune import FinetuneArgs
from mae_lesson.optim import WarmupCosine, param_groups
from mae_lesson.engine import micro_batches as micro_batches_of
from mae_lesson.engine import train_one_epoch
from mae_lesson.pretrain import NonFiniteLossError, PretrainArgs, build_parser, parse_args, train_step
from mae_lesson.run.finetune_cli import parse_args as finetune_parse_args

ROOT = Path(__file__).resolve().parents[1]
TINY = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "encoder_depth": 2, "encoder_num_heads": 2,
        "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2, "norm_pix_loss": False}


def tiny_training(seed: int = 0):
    torch.manual_seed(seed)
    model = MAE(TINY)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, betas=(0.9, 0.95))
    return model, optimizer, WarmupCosine(optimizer, 1e-3, total_steps=10, warmup_steps=2)


def micro_batches(step: int, count: int = 2, batch: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(100 + step)
    return [(torch.randn(batch, 1, 16, 16, generator=gen), torch.rand(batch, 16, generator=gen)) for _ in range(count)]


# ------------------------------------------------------------------------------ training step
@pytest.mark.slow
def test_train_step_is_the_plain_loop_with_gradient_accumulation():
    """Two micro-batches per step: loss / 2 each, one update, zero the grads, advance the schedule."""
    model, optimizer, schedule = tiny_training()
    plain, plain_opt, plain_schedule = copy.deepcopy((model, optimizer, schedule))
    plain_schedule.optimizer = plain_opt
    for step in range(3):
        batches = micro_batches(step)
        engine_loss = train_step(model, optimizer, schedule, batches)
        plain_loss = 0.0
        for imgs, noise in batches:
            loss = plain(imgs, noise=noise)["loss"] / len(batches)
            loss.backward()
            plain_loss += loss.item()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)
        plain_schedule.step()
        assert engine_loss == pytest.approx(plain_loss, abs=0, rel=1e-12)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    assert schedule.lr == plain_schedule.lr and all(p.grad is None for p in model.parameters())


def test_train_step_refuses_a_nan_loss_before_touching_the_weights():
    model, optimizer, schedule = tiny_training()
    before = copy.deepcopy(model.state_dict())
    imgs, noise = micro_batches(0, count=1)[0]
    with pytest.raises(NonFiniteLossError, match="nan"):
        train_step(model, optimizer, schedule, [(imgs * float("nan"), noise)])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert schedule.lr == 0 and all(p.grad is None for p in model.parameters())


def test_train_step_clips_the_gradient_norm():
    model, optimizer, schedule = tiny_training()
    clipped = {}
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        clipped["norm"] = float(original(params, max_norm))
        clipped["after"] = float(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm())
        return clipped["norm"]

    torch.nn.utils.clip_grad_norm_, saved = spy, torch.nn.utils.clip_grad_norm_
    try:
        train_step(model, optimizer, schedule, micro_batches(0), clip_grad=1e-3)
    finally:
        torch.nn.utils.clip_grad_norm_ = saved
    assert clipped["norm"] > 1e-3 and clipped["after"] == pytest.approx(1e-3, rel=1e-3)


def test_the_epoch_loop_runs_any_run_and_hands_each_step_to_it():
    """train_one_epoch needs only the run's fields and its after_step: the engine knows no folders or signals."""
    model, optimizer, schedule = tiny_training()
    calls = []

    class Loader:
        def set_epoch(self, epoch):
            self.epoch = epoch

        def batch(self, index):
            gen = torch.Generator().manual_seed(index)
            return torch.randn(4, 1, 16, 16, generator=gen), None, 1000 * self.epoch + index

    run = SimpleNamespace(
        args=SimpleNamespace(accum_iter=2, batch_size=4, clip_grad=None, epochs=2, progress=False),
        loader=Loader(), model=model, train_model=model, optimizer=optimizer, schedule=schedule, autocast=None,
        scaler=None, device=torch.device("cpu"), rank=0, world=1, step=3, steps_per_epoch=3, total_steps=5,
        epoch_loss_sum=0.0, epoch_loss_count=0, nan_advice=lambda: "",
        after_step=lambda epoch, end, loss, rate, stats: calls.append((run.step, epoch, end, loss, stats())))
    stats = train_one_epoch(run, epoch=1)  # steps 4 and 5: the run ends before the epoch's third step
    assert [(step, epoch, end) for step, epoch, end, _, _ in calls] == [(4, 1, 5), (5, 1, 5)]
    losses = [loss for _, _, _, loss, _ in calls]
    assert run.step == 5 and stats["train_loss"] == pytest.approx(sum(losses) / 2) and stats["images"] == 16
    assert calls[-1][4]["train_loss"] == stats["train_loss"]  # after_step sees the epoch so far
    fresh = train_step(*tiny_training(), micro_batches_of(run, step_in_epoch=0))
    assert fresh == pytest.approx(losses[0], rel=1e-6)  # step 4 is batch 0 of epoch 1, with its seeded masks


# ------------------------------------------------------------------------------ the mask's owner
def test_mask_noise_is_seeded_and_matches_the_forward_pass():
    model = MAE({**TINY, "mask_type": "block", "mask_ratio": 0.5})
    first = model.mask_noise(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, model.mask_noise(3, generator=torch.Generator().manual_seed(7)))
    imgs = torch.randn(3, 1, 16, 16)
    torch.manual_seed(1)
    drawn = model(imgs)
    torch.manual_seed(1)
    given = model(imgs, noise=model.mask_noise(3))
    assert torch.equal(drawn["mask"], given["mask"]) and torch.equal(drawn["loss"], given["loss"])


def test_forward_leaves_no_state_on_the_module():
    model = MAE({**TINY, "mask_type": "block", "mask_ratio": 0.5})
    before = set(vars(model))
    model(torch.randn(2, 1, 16, 16))
    model(torch.randn(2, 1, 24, 16))  # another grid: its masks come from its own grid
    assert set(vars(model)) == before


def test_other_grids_need_their_grid_said_out_loud():
    model = MAE(TINY)
    tokens = torch.randn(2, 24, 16)  # a 6x4 grid, not the configured 4x4
    with pytest.raises(ValueError, match="mask_noise"):
        model.random_masking(tokens, 0.75)
    noise = model.mask_noise(2, grid_hw=(6, 4))
    latent, mask, ids_restore = model.random_masking(tokens, 0.75, noise)
    assert latent.shape == (2, 6, 16) and mask.shape == (2, 24)
    with pytest.raises(ValueError, match="grid_hw"):
        model.forward_decoder(torch.randn(2, 7, 16), ids_restore)  # no square guess for 24 patches
    assert model.forward_decoder(torch.randn(2, 7, 16), ids_restore, (6, 4)).shape == (2, 24, 16)


def test_a_subclass_that_overrides_random_masking_owns_its_masks():
    calls = []

    class KeepFirst(MAE):
        def random_masking(self, x, mask_ratio):  # the guide's two-argument override
            calls.append(mask_ratio)
            noise = torch.arange(x.shape[1], dtype=torch.float32).expand(x.shape[0], -1)
            return super().random_masking(x, mask_ratio, noise)

    out = KeepFirst(TINY)(torch.randn(2, 1, 16, 16))
    assert calls == [0.75] and out["mask"][0].tolist() == [0.0] * 4 + [1.0] * 12


def _keep_first_noise(batch: int, length: int, device=None) -> torch.Tensor:
    """Ascending noise: every image keeps its first patches in image order."""
    return torch.arange(length, dtype=torch.float32, device=device).expand(batch, length)


def _tiny_test_data(n: int = 6):
    from mae_lesson.data import ImageData

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=gen)
    return ImageData(images, torch.zeros(n, dtype=torch.long), ("a",), (0.5,), (0.25,))


def test_noise_is_drawn_in_one_place(monkeypatch):
    """masking.uniform_noise is the one draw: the plain function, masking_noise and the model's forward all use it."""
    from mae_lesson import masking

    monkeypatch.setattr(masking, "uniform_noise", lambda batch, length, device=None, generator=None:
                        _keep_first_noise(batch, length, device))
    first_four = [0.0] * 4 + [1.0] * 12
    assert masking.random_masking(torch.randn(2, 16, 8), 0.75)[1][0].tolist() == first_four
    assert masking.masking_noise("random", 2, (4, 4), 0.75).equal(_keep_first_noise(2, 16))
    assert MAE(TINY)(torch.randn(2, 1, 16, 16))["mask"][1].tolist() == first_four


def test_a_mask_noise_override_changes_forward_and_evaluation():
    """mask_noise is the model's one source of masks: the forward pass and evaluate_loss both follow an override."""
    from mae_lesson.evaluate import evaluate_loss

    class KeepFirstNoise(MAE):
        def mask_noise(self, batch, grid_hw=None, mask_ratio=None, generator=None, device=None):
            grid_h, grid_w = grid_hw or self.patch_embed.grid_size
            return _keep_first_noise(batch, grid_h * grid_w, device)

    torch.manual_seed(0)
    plain = MAE(TINY).eval()
    custom = KeepFirstNoise(TINY).eval()
    custom.load_state_dict(plain.state_dict())
    assert custom(torch.randn(2, 1, 16, 16))["mask"][0].tolist() == [0.0] * 4 + [1.0] * 12
    data = _tiny_test_data()
    imgs = (data.images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = float(plain(imgs, noise=_keep_first_noise(len(imgs), 16))["loss"])
    got = evaluate_loss(custom, data, custom.config, "cpu")
    assert got == pytest.approx(expected, rel=1e-6)
    assert got != pytest.approx(evaluate_loss(plain, data, plain.config, "cpu"), rel=1e-6)


def test_a_random_masking_override_still_takes_given_noise():
    """The guide's two-argument override owns the masks drawn in forward; given noise (the engine, evaluate_loss) is kept."""
    from mae_lesson.evaluate import evaluate_loss

    class KeepFirst(MAE):
        def random_masking(self, x, mask_ratio):
            return super().random_masking(x, mask_ratio, _keep_first_noise(x.shape[0], x.shape[1]))

    model = KeepFirst(TINY).eval()
    imgs = torch.randn(2, 1, 16, 16)
    assert model(imgs)["mask"][0].tolist() == [0.0] * 4 + [1.0] * 12
    reversed_noise = _keep_first_noise(2, 16).flip(-1)
    assert model(imgs, noise=reversed_noise)["mask"][0].tolist() == [1.0] * 12 + [0.0] * 4
    assert evaluate_loss(model, _tiny_test_data(), model.config, "cpu") > 0


def test_the_images_are_checked_once_per_forward(monkeypatch):
    calls = []
    real = MAE.check_images
    monkeypatch.setattr(MAE, "check_images", lambda self, imgs: calls.append(1) or real(self, imgs))
    MAE(TINY)(torch.randn(2, 1, 16, 16))
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_images_of_another_float_dtype_get_a_message_with_the_fix(dtype):
    model = MAE(TINY)
    with pytest.raises(TypeError, match=rf"{dtype}.*imgs\.to\(torch\.float32\)"):
        model(torch.randn(2, 1, 16, 16, dtype=dtype))
    assert model.to(dtype)(torch.randn(2, 1, 16, 16, dtype=dtype))["pred"].dtype == dtype  # the fix works


# ------------------------------------------------------------------------------ one encoder path
def test_the_classifier_is_built_without_a_decoder(monkeypatch):
    def no_mae(*args, **kwargs):
        raise AssertionError("ViTClassifier built an MAE")

    monkeypatch.setattr(MAE, "__init__", no_mae)
    classifier = ViTClassifier(Config(TINY), num_classes=3)
    assert not any("decoder" in name or "mask_token" in name for name in classifier.state_dict())
    torch.testing.assert_close(classifier.pos_embed[0, 0], torch.zeros(16))  # the sin-cos table's cls row


def test_one_definition_each_of_the_shared_pieces():
    sources = {p: p.read_text() for p in [*(ROOT / "mae_lesson").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                                          *(ROOT / "experiments").glob("*.py")]}

    def defined(pattern: str) -> list[str]:
        return [str(p.relative_to(ROOT)) for p, text in sources.items() if re.search(pattern, text, re.M)]

    assert defined(r"^MASK_TYPES\s*=") == ["mae_lesson/masking.py"]
    assert defined(r"^FLOP_FORMULA\s*=") == ["mae_lesson/flops.py"]
    assert defined(r"^def add_dataclass_flags\(") == ["mae_lesson/cli.py"]
    assert defined(r"^def patch_tokens\(") == ["mae_lesson/patch_embed.py"]
    # The pieces issue 29 found written two or three times, each defined once now.
    for name, home in (("log", "mae_lesson/utils.py"), ("evaluate_encoder", "mae_lesson/evaluate.py"),
                       ("bundled_file", "mae_lesson/bundled.py"), ("load_recipe", "mae_lesson/bundled.py"),
                       ("parse_with_recipe", "mae_lesson/cli.py"), ("check_fields", "mae_lesson/cli.py"),
                       ("uniform_noise", "mae_lesson/masking.py")):
        assert defined(rf"^def {name}\(") == [home], name
    assert defined(r"^\s+def split_qkv\(") == ["mae_lesson/transformer.py"]
    assert defined(r"^class EncoderWithMaskTokens\(") == ["experiments/ablation_runs.py"]
    # Exercise modules rebuild the path by hand on purpose (the learner's version is checked against it).
    by_hand = [p for p in defined(r"patch_embed\(imgs\)") if not p.startswith("mae_lesson/exercises/")]
    assert by_hand == ["mae_lesson/patch_embed.py"]
    assert not defined(r"self\._grid_hw")


# ------------------------------------------------------------------------------ recipes
def test_the_pretraining_recipe_is_the_shipped_checkpoints_recipe():
    recipe = load_recipe("pretrain_cpu")
    same_keys = [k for k in recipe if k not in ("epochs", "config")]
    architecture = {k: v for k, v in Config.from_file(recipe["config"]).items() if k not in ("model_name", "description")}
    for name in ("mae_fashion_mnist_p7", "mae_fashion_mnist_p7_e150"):
        shipped = json.loads((ROOT / "data" / f"{name}_run" / "args.json").read_text())
        assert {k: shipped[k] for k in same_keys} == {k: recipe[k] for k in same_keys}, name
        built = Config.from_file(shipped["config"]).replace(**shipped["overrides"])
        assert {k: v for k, v in built.items() if k not in ("model_name", "description")} == architecture, name
    assert recipe["epochs"] == 50 == json.loads((ROOT / "data" / "mae_fashion_mnist_p7_run" / "args.json").read_text())["epochs"]
    defaults = dataclasses.asdict(PretrainArgs())
    assert {k: defaults[k] for k in recipe} == recipe
    assert dataclasses.asdict(parse_args([])) == defaults
    main_job = (ROOT / "scripts" / "main.sh").read_text()
    assert "--recipe pretrain_cpu" in main_job and "--blr" not in main_job


def test_the_finetuning_recipes_are_the_defaults_of_the_table_and_of_finetune_args():
    table = load_recipe("finetune_table")
    committed = json.loads((ROOT / "docs" / "results" / "results.json").read_text())["finetune_args"]
    assert {k: committed[k] for k in table} == table
    ns = finetune_parse_args([])
    assert {k: getattr(ns, k) for k in table} == table
    short = load_recipe("finetune_short")
    assert {k: getattr(FinetuneArgs(), k) for k in short} == short
    ns = finetune_parse_args(["--recipe", "finetune_short", "--epochs", "2"])
    assert ns.epochs == 2 and ns.drop_path == short["drop_path"]
    assert set(recipe_names()) >= {"pretrain_cpu", "finetune_table", "finetune_short"}


def test_a_recipe_with_an_unknown_name_is_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("epochs: 3\nwarmup_epoch: 1\n")
    with pytest.raises(ValueError, match="warmup_epoch"):
        check_recipe(PretrainArgs, load_recipe(path), str(path))
    with pytest.raises(ValueError, match="warmup_epoch"):
        parse_args(["--recipe", str(path)])
    with pytest.raises(FileNotFoundError, match="pretrain_cpu"):
        load_recipe("no_such_recipe")
    path.write_text("epochs: 3\nblr: 0.5\n")
    assert parse_args(["--recipe", str(path)]).blr == 0.5


def test_every_flag_has_help_with_its_default():
    text = build_parser().format_help()
    for f in dataclasses.fields(PretrainArgs):
        if f.name != "overrides":
            flag = "--" + f.name.replace("_", "-")
            block = text.split("\n  " + flag, 1)[1].split("\n  --", 1)[0]
            assert "default" in block and len(block) > 30, flag


def test_evaluate_loss_scores_exactly_max_images():
    """max_images below the batch size scores that many images, not a whole batch (the first images, same masks)."""
    from mae_lesson.evaluate import evaluate_loss, fixed_mask_batches
    from mae_lesson.loader import ImageData

    torch.manual_seed(0)
    model, data = MAE(TINY).eval(), _tiny_test_data()
    first = ImageData(data.images[:3], data.labels[:3], data.classes, data.mean, data.std)
    assert [len(imgs) for imgs, _ in fixed_mask_batches(model, data, max_images=3, batch_size=500)] == [3]
    assert [len(imgs) for imgs, _ in fixed_mask_batches(model, data, max_images=5, batch_size=2)] == [2, 2, 1]
    assert evaluate_loss(model, data, model.config, "cpu", max_images=3) == pytest.approx(
        evaluate_loss(model, first, model.config, "cpu"), rel=1e-6)
