"""No package function leaves a caller's model on another device, and notebooks 05-10 train on ``device``.

There is no GPU in CI, so a fake "cuda" stands in: ``Module.to`` / ``Tensor.to`` record where a
model was sent and otherwise leave the tensors on the CPU. A function that moves the caller's
model to the GPU and leaves it there shows up as a model whose last move went to "cuda".
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mae_lesson import MAE
from mae_lesson.attention import encoder_attention
from mae_lesson.data import ImageData, eval_transform
from mae_lesson.evaluate import evaluate_loss, extract_features
from mae_lesson.finetune import FinetuneArgs, finetune, predict
from mae_lesson.viz import reconstruct

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CFG = {"img_size": 8, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "encoder_depth": 2, "encoder_num_heads": 2,
       "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}


class FakeCuda:
    """Where each module was last sent by ``.to``; "cuda" moves are recorded, not done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: dict[int, str] = {}
        module_to, tensor_to = nn.Module.to, torch.Tensor.to

        def fake_module_to(module, *args, **kwargs):
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
            if device is not None:
                self.sent[id(module)] = device.type
            return module_to(module, dtype) if dtype is not None else module

        def fake_tensor_to(tensor, *args, **kwargs):
            if args and isinstance(args[0], torch.Tensor):
                return tensor_to(tensor, args[0].dtype)
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
            return tensor_to(tensor, dtype) if dtype is not None else tensor

        monkeypatch.setattr(nn.Module, "to", fake_module_to)
        monkeypatch.setattr(torch.Tensor, "to", fake_tensor_to)

    def where(self, module: nn.Module) -> str:
        """The device ``module`` was last sent to (``cpu`` if never moved)."""
        return self.sent.get(id(module), "cpu")


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCuda:
    return FakeCuda(monkeypatch)


def toy_data(n: int = 32) -> ImageData:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    return ImageData(torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8), labels, ("a", "b"),
                     (0.4,), (0.3,))


def test_fake_cuda_sees_a_model_left_on_the_gpu(fake_cuda):
    """The spy itself: a function that leaves the model on "cuda" is seen."""
    model = MAE(CFG)
    model.to("cuda")
    assert fake_cuda.where(model) == "cuda"
    model.to(torch.device("cpu"))
    assert fake_cuda.where(model) == "cpu"


CALLS = {
    "extract_features": lambda m, d: extract_features(m, d, "both", device="cuda", progress=False),
    "evaluate_loss": lambda m, d: evaluate_loss(m, d, m.config, torch.device("cuda"), max_images=16),
    "encoder_attention": lambda m, d: encoder_attention(m, eval_transform(d.images[:4], d, 8)),
    "reconstruct": lambda m, d: reconstruct(m, eval_transform(d.images[:4], d, 8)),
    "finetune": lambda m, d: finetune(m, d, d, FinetuneArgs(epochs=1, max_steps=2, batch_size=16, device="cuda",
                                                            progress=False, eval_every_epoch=False)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_package_functions_leave_the_callers_model_where_it_was(fake_cuda, name):
    model, data = MAE(CFG).eval(), toy_data()
    CALLS[name](model, data)
    assert fake_cuda.where(model) == "cpu", f"{name} left the caller's model on {fake_cuda.where(model)}"


def test_extract_features_restores_train_mode(fake_cuda):
    model = MAE(CFG).train()
    extract_features(model, toy_data(), device="cuda", progress=False)
    assert model.training


def test_finetune_returns_its_model_on_the_callers_device(fake_cuda):
    mae, data = MAE(CFG), toy_data()
    out = finetune(mae, data, data, FinetuneArgs(epochs=1, max_steps=2, batch_size=16, device="cuda", progress=False,
                                                 eval_every_epoch=False))
    assert fake_cuda.where(out["model"]) == "cpu", "finetune's model stays on cuda: the caller's CPU tensors do not fit"
    assert fake_cuda.sent.get(id(out["model"])) is not None, "the fine-tune never ran on args.device"
    # predict() with the caller's device works on the returned model: the same device it is on.
    assert predict(out["model"], data, 8, torch.device("cpu")).shape == (len(data),)


# ------------------------------------------------------------------------ notebooks, statically
TRAINING_NOTEBOOKS = ["05_loss", "06_pretraining", "07_finetuning", "08_going_further", "10_questions"]


def code_cells(name: str) -> list[tuple[str, str]]:
    """``(cell id, source)`` of a notebook's code cells, IPython magics commented out."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return [(c.get("id", "?"), re.sub(r"^\s*[%!]", "# ", "".join(c["source"]), flags=re.M))
            for c in nb["cells"] if c["cell_type"] == "code"]


def device_problems(source: str) -> list[str]:
    """Each call in ``source`` that trains or evaluates off the notebook's ``device``.

    ``extract_features``/``FinetuneArgs``/``PretrainArgs`` must get ``device=`` (a ``**dict`` is
    trusted when the dict was built with ``device=``); ``evaluate_loss``'s 4th argument must not
    be a literal device; those three may name ``device="cpu"`` only in a cell that says why with
    ``# on the CPU:``.
    """
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("extract_features", "FinetuneArgs", "PretrainArgs"):
            keys = {k.arg for k in node.keywords}
            if "device" not in keys and None not in keys:
                problems.append(f"{name}(...) without device=")
        if name == "evaluate_loss" and len(node.args) >= 4:
            dev = node.args[3]
            if isinstance(dev, ast.Constant) or ast.unparse(dev) == "torch.device('cpu')":
                problems.append(f"evaluate_loss(..., {ast.unparse(dev)})")
            for k in node.keywords:
                if k.arg == "device" and isinstance(k.value, ast.Constant) and k.value.value == "cpu" \
                        and "# on the CPU:" not in source:
                    problems.append(f"{name}(..., device='cpu')")
    return problems


def test_device_problems_finds_the_cpu_hard_codings():
    """The static check itself, on the mistakes notebook 06 and 10 had."""
    assert device_problems('evaluate_loss(m, test, cfg, torch.device("cpu"))')
    assert device_problems("evaluate_loss(m, test, cfg, 'cpu')")
    assert device_problems("extract_features(model, train, 'both', progress=False)")
    assert device_problems("FinetuneArgs(epochs=2, blr=1e-3)")
    assert not device_problems("evaluate_loss(m, test, cfg, device)")
    assert not device_problems("FinetuneArgs(epochs=2, **recipe)")


@pytest.mark.parametrize("name", TRAINING_NOTEBOOKS)
def test_notebooks_train_and_evaluate_on_their_device(name):
    problems = [f"cell {cid}: {p}" for cid, src in code_cells(name) for p in device_problems(src)]
    assert not problems, f"{name} trains or evaluates off `device`: " + "; ".join(problems)


def loop_off_device(source: str) -> bool:
    """Whether ``source`` has a top-level ``for`` loop that calls ``.backward()`` and never sends anything to ``device``."""
    tree = ast.parse(source)
    loops = [node for node in tree.body if isinstance(node, ast.For)]
    trains = any(isinstance(n, ast.Attribute) and n.attr == "backward" for loop in loops for n in ast.walk(loop))
    return trains and ".to(device" not in source


def test_loop_off_device_finds_a_cpu_loop():
    cpu_loop = "model = MAE(cfg)\nfor step in range(3):\n    loss = model(x)['loss']\n    loss.backward()\n"
    assert loop_off_device(cpu_loop)
    assert not loop_off_device(cpu_loop.replace("MAE(cfg)", "MAE(cfg).to(device)"))


@pytest.mark.parametrize("name", TRAINING_NOTEBOOKS)
def test_hand_written_training_loops_run_on_device(name):
    """A cell whose own loop trains (``loss.backward()``) sends its model and batches to ``device``."""
    lazy = [cid for cid, src in code_cells(name) if loop_off_device(src)]
    assert not lazy, f"{name}: training loops that never move anything to `device`, cells {lazy}"
