"""Mixed precision picks bf16 only where the GPU has it natively, fp16 with a scaler elsewhere."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import pytest
import torch

from mae_lesson import amp


@pytest.fixture
def gpu(monkeypatch):
    """Pretend a CUDA GPU of a given compute capability is present (this works on a CPU machine)."""

    def make(capability: tuple[int, int], emulated_bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        # What misleads a plain is_bf16_supported() check: it answers True through emulation.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: emulated_bf16 or capability >= (8, 0))

    return make


def _call(device, mode):
    with warnings.catch_warnings():
        # On a machine without CUDA, autocast("cuda") and GradScaler("cuda") warn that they are disabled.
        warnings.simplefilter("ignore", UserWarning)
        return amp.autocast_for(device, mode)


@pytest.mark.parametrize("capability, name", [((7, 5), "T4"), ((7, 0), "V100"), ((6, 0), "P100")])
def test_auto_picks_fp16_with_a_scaler_without_native_bf16(gpu, capability, name):
    gpu(capability)
    assert torch.cuda.is_bf16_supported()  # the emulation answer a naive check would trust
    assert amp.has_native_bf16("cuda") is False
    assert amp.amp_dtype("cuda", "auto") == torch.float16
    context, scaler = _call(torch.device("cuda"), "auto")
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.float16
    assert isinstance(scaler, torch.amp.GradScaler), name


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (8, 9), (9, 0)])
def test_auto_picks_bf16_without_a_scaler_on_native_bf16(gpu, capability):
    gpu(capability)
    assert amp.has_native_bf16(torch.device("cuda", 0)) is True
    context, scaler = _call("cuda", "auto")
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    assert scaler is None


@pytest.mark.parametrize("capability", [(7, 5), (9, 0)])
def test_explicit_choices_are_honoured_on_any_gpu(gpu, capability):
    gpu(capability)
    context, scaler = _call("cuda", "bf16")
    assert context.fast_dtype == torch.bfloat16 and scaler is None
    context, scaler = _call("cuda", "fp16")
    assert context.fast_dtype == torch.float16 and isinstance(scaler, torch.amp.GradScaler)
    context, scaler = _call("cuda", "none")
    assert isinstance(context, nullcontext) and scaler is None


@pytest.mark.parametrize("device", ["cpu", "mps"])
@pytest.mark.parametrize("mode", ["auto", "bf16", "fp16", "none"])
def test_cpu_and_mps_train_in_fp32(gpu, device, mode):
    gpu((9, 0))  # even with a GPU present, a model placed on the CPU or MPS stays in fp32
    context, scaler = amp.autocast_for(device, mode)
    assert isinstance(context, nullcontext) and scaler is None
    assert amp.has_native_bf16(device) is False


def test_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="auto, bf16, fp16, none.*'float16'"):
        amp.autocast_for("cpu", "float16")


def test_fp32_context_runs_a_step_on_this_machine():
    context, scaler = amp.autocast_for("cpu", "auto")
    layer = torch.nn.Linear(4, 2)
    with context:
        out = layer(torch.randn(3, 4))
    assert out.dtype == torch.float32 and scaler is None
