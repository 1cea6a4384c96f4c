"""Smoke tests of the benchmark scripts: they run, write their reports, and count FLOPs right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from mae_lesson.flops import forward_flops_by_part, train_step_flops

from mae_lesson import MAE, Config

from benchmarks.common import CONFIG_NAMES

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.mark.parametrize("name", ["fashion_mnist_tiny", "mae_base"])
def test_analytic_flops_match_pytorchs_counter(name):
    """The benchmark's FLOP formula equals FlopCounterMode on a real forward (meta device: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = Config.from_file(name)
    with torch.device("meta"):
        model = MAE(cfg)
        imgs = torch.empty(2, cfg.in_chans, *(g * cfg.patch_size for g in cfg.grid_size))
        noise = torch.empty(2, model.patch_embed.num_patches).uniform_()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(imgs, noise=noise)
    ours = sum(forward_flops_by_part(cfg, 2).values())
    assert counter.get_total_flops() == ours
    assert train_step_flops(cfg, 2) == 3 * ours


@pytest.mark.slow
def test_cpu_benchmark_quick_writes_report(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--quick", "--out", str(tmp_path), "--threads", "1"]
    subprocess.run(cmd, check=True, env=ENV, timeout=600, capture_output=True, cwd=ROOT)
    results = json.loads((tmp_path / "results_cpu.json").read_text())
    tiny = results["configs"]["fashion_mnist_tiny"]["implementations"]
    # Every peer is reported: the ones that run with timings, vit-pytorch pool='cls' with its error.
    assert tiny["mae_lesson"]["images_per_s"] > 0 and tiny["hf_sdpa"]["images_per_s"] > 0
    assert "error" in tiny["vit_pytorch_cls"] and "images_per_s" in tiny["vit_pytorch_mean"]
    assert results["configs"]["fashion_mnist_tiny"]["hf_parity_abs_loss_diff"] < 1e-5
    assert results["matmul_peak_flops"] > 0 and results["loader"]["vs_model_paired"] > 0
    assert results["loader"]["config"] == "fashion_mnist_p7"  # the loader against the default model
    assert {m["config"] for m in results["mask_tokens"]} == {"fashion_mnist_tiny", "vit_b16"}
    assert list(results["configs"]) == CONFIG_NAMES
    # The other configurations time ours and HF only; every one has ours ÷ HF with its spread over rounds.
    for name, entry in results["configs"].items():
        impls = entry["implementations"]
        if name not in ("fashion_mnist_tiny", "vit_b16"):
            assert set(impls) == {"mae_lesson", "hf_sdpa"} and not entry["full_treatment"]
        rng = impls["hf_sdpa"]["ours_speedup_spread"]
        assert rng["min"] <= rng["median"] == impls["hf_sdpa"]["ours_speedup_paired"] <= rng["max"]
    ours_vs_hf = [t for t in results["key_ratios"] if t["what"].startswith("mae_lesson.MAE (eager) / HF")]
    assert [t["config"] for t in ours_vs_hf] == CONFIG_NAMES and all(t["spread"] for t in ours_vs_hf)
    text = (tmp_path / "results_cpu.md").read_text()
    assert "## Key ratios" in text and "FLOP count:" in text
    assert "## Ours against Hugging Face at every configuration" in text
    section = text.split("## Ours against Hugging Face at every configuration")[1].split("\n## ")[0]
    assert all(f"| {name} |" in section for name in CONFIG_NAMES)
    # --update reruns one configuration and keeps the other's figures.
    subprocess.run(cmd + ["--update", "--configs", "fashion_mnist_tiny", "--rounds", "2"], check=True, env=ENV,
                   timeout=600, capture_output=True, cwd=ROOT)
    updated = json.loads((tmp_path / "results_cpu.json").read_text())
    for name, row in results["configs"]["vit_b16"]["implementations"].items():  # kept (peak may rise)
        assert updated["configs"]["vit_b16"]["implementations"][name].get("times_s") == row.get("times_s")
    assert len(updated["configs"]["fashion_mnist_tiny"]["implementations"]["mae_lesson"]["times_s"]) == 2
    assert sorted(m["config"] for m in updated["mask_tokens"]) == ["fashion_mnist_tiny", "vit_b16"]
    assert list(updated["configs"]) == CONFIG_NAMES and updated["loader"] == results["loader"]
    assert "--update" in updated["command"] and ", then `" in updated["command"]


def test_mask_token_study_times_the_sweeps_encoder_on_every_token_and_on_visible_ones():
    """One encoder-with-mask-tokens (the ablation sweep's); its record has the report's fields."""
    from benchmarks import mask_tokens
    from experiments.ablation_runs import EncoderWithMaskTokens

    cfg = Config(img_size=16, patch_size=4, in_chans=1, embed_dim=16, encoder_depth=1, encoder_num_heads=2,
                 decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)  # 16 patches, 4 visible
    model = EncoderWithMaskTokens(cfg)
    imgs, noise = torch.randn(2, 1, 16, 16), torch.rand(2, 16)
    fns = mask_tokens.encoder_pass_fns(model, imgs, noise, 0.75)
    fns["with_mask_tokens"]()
    assert model.encoder_mask_token.grad is not None  # the learned token is in the timed pass
    fns["visible_only"]()
    assert model.encoder_mask_token.grad is None
    result = mask_tokens.measure("toy", cfg, batch=2, rounds=2, device=torch.device("cpu"))
    assert (result.tokens_all, result.tokens_visible) == (17, 5)
    assert result.with_mask_tokens["rounds"] == 2 and result.speedup_paired > 0 and result.flop_ratio > 3


@pytest.mark.slow
def test_memory_probe_reports_the_steps_peak_in_its_own_process():
    from benchmarks import memory

    if not Path("/proc/self/status").exists():
        pytest.skip("reads /proc/self (Linux)")
    result = memory.measure("mae_lesson", "fashion_mnist_tiny", quick=True, threads=1)
    assert set(result) == {"baseline_rss_mb", "peak_rss_mb", "step_peak_delta_mb", "method"}, result
    assert result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0
    assert "error" in memory.measure("no_such_impl", "fashion_mnist_tiny", quick=True, threads=1)


@pytest.mark.parametrize("low, median, high, expected", [
    (1.05, 1.10, 1.20, "lead"), (0.90, 0.93, 0.97, "behind"), (0.95, 1.10, 1.20, "level"),
    (1.01, 1.02, 1.04, "level"), (1.01, 1.05, 1.08, "narrow lead"), (0.90, 0.95, 0.99, "narrow deficit"),
])
def test_verdict_reads_the_spread_over_rounds(low, median, high, expected):
    from benchmarks.train_step_report import verdict

    assert verdict({"min": low, "median": median, "max": high}) == expected


@pytest.mark.slow
def test_gpu_benchmark_dry_run_on_cpu(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.gpu_train_step", "--dry-run", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, env=ENV, timeout=600, capture_output=True, cwd=ROOT)
    results = json.loads((tmp_path / "results_gpu.json").read_text())
    assert results["dry_run"] and results["amp_dtype"] == "torch.bfloat16"
    ours = results["implementations"]["mae_lesson"]
    assert ours["images_per_s"] > 0 and 0 < ours["mfu"]
    assert "error" in results["implementations"]["vit_pytorch_cls"]
    assert "MFU" in (tmp_path / "results_gpu.md").read_text()


@pytest.mark.slow
def test_gpu_benchmark_refuses_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_train_step"], env=ENV, timeout=120,
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "no CUDA GPU is visible" in done.stderr and "--dry-run" in done.stderr


@pytest.mark.slow
def test_profile_names_the_operators(tmp_path):
    from benchmarks.profile_step import main as profile_main

    out = tmp_path / "profile.md"
    profile_main(["--batch", "4", "--steps", "1", "--impls", "mae_lesson", "hf_sdpa", "--rows", "5", "--out", str(out)])
    text = out.read_text()
    assert text.startswith("Command: `python -m benchmarks.profile_step --batch 4")
    assert text.count("## mae_lesson") == 1 and text.count("## hf_sdpa") == 1 and "aten::" in text


def test_readme_quotes_the_committed_cpu_benchmark():
    """The README's speed table is the committed run's "every configuration" table, row for row."""
    from benchmarks.train_step_report import versus_hf_table

    results = json.loads((ROOT / "benchmarks" / "results_cpu.json").read_text())
    readme = (ROOT / "README.md").read_text()
    table = versus_hf_table(results)
    assert table in readme, "README's speed table differs from benchmarks/results_cpu.json: paste versus_hf_table"
    assert table in (ROOT / "benchmarks" / "results_cpu.md").read_text()
    assert f"({round(results['wall_s'] / 60)} minutes on 2 quiet cores)" in readme
    assert set(results["configs"]) == set(CONFIG_NAMES)  # every configuration measured, none left out
