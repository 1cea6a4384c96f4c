"""The training-step benchmark's report: FLOP utilisation, paired ratios, verdicts, Markdown.

Everything here reads the results as ``benchmarks/results_cpu.json`` stores them (so that ``--update``
can merge a rerun into an earlier file and redraw it). A ratio is the median over rounds of the
per-round ratio (side by side), reported with its min and max over rounds. Ours against Hugging
Face gets a verdict from that spread (``verdict``): lead if the smallest per-round ratio is above
1.02, behind if the largest is below 0.98, level if the range holds 1.0 or the median is within 3%
of it, otherwise a narrow lead (or deficit): every round on one side, some by under 2%.

Achieved model FLOP/s = analytic train-step FLOPs (``common.FLOP_FORMULA``) / median step time, as
a fraction of the best matmul rate of the run, and (robust to changing machine load) the median
over rounds of the step's FLOP/s over the matmul rate measured in the same round.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import CONFIG_NAMES, FLOP_FORMULA, LABELS, fmt, fmt_spread, md_table, ratio_spread

# (config, numerator, denominator): the speed ratios the report leads with.
KEY_RATIOS = [(name, "mae_lesson", "hf_sdpa") for name in CONFIG_NAMES] + [
    ("fashion_mnist_tiny", "mae_lesson_compiled", "hf_sdpa"),
]
# Verdict of ours against Hugging Face from the per-round ratios (see the module docstring).
LEAD_MIN, BEHIND_MAX, LEVEL_BAND = 1.02, 0.98, 0.03


def verdict(rng: dict[str, float]) -> str:
    """Ours against Hugging Face from the min, median and max over rounds of ours ÷ HF."""
    if rng["min"] > LEAD_MIN:
        return "lead"
    if rng["max"] < BEHIND_MAX:
        return "behind"
    if rng["min"] <= 1.0 <= rng["max"] or abs(rng["median"] - 1.0) <= LEVEL_BAND:
        return "level"
    return "narrow lead" if rng["median"] > 1.0 else "narrow deficit"


def paired_ratios(entry: dict[str, Any]) -> None:
    """Ours (eager) ÷ each peer, and compiled ÷ HF: median and min/max over rounds, from the stored times."""
    rows = entry["implementations"]
    ours = rows.get("mae_lesson", {}).get("times_s")
    for impl_name, row in rows.items():
        if ours and impl_name != "mae_lesson" and row.get("times_s"):
            rng = ratio_spread(row["times_s"], ours)
            row["ours_speedup_paired"], row["ours_speedup_spread"] = rng["median"], rng
    compiled, hf = (rows.get(n, {}).get("times_s") for n in ("mae_lesson_compiled", "hf_sdpa"))
    if compiled and hf:
        rng = ratio_spread(hf, compiled)
        entry["compiled_vs_hf_paired"], entry["compiled_vs_hf_spread"] = rng["median"], rng


def finish(results: dict[str, Any]) -> None:
    """Peak, model FLOP utilisation, the paired ratios and the key ratios, from the raw timings."""
    peak = max(max(v) for v in results["matmul"].values())
    results["matmul_peak_flops"] = peak
    ratios = []
    for name, entry in results["configs"].items():
        flops = entry["train_step_flops"]
        for row in entry["implementations"].values():
            if "median_s" in row:
                row["achieved_flops"] = flops / row["median_s"]
                row["fraction_of_matmul_peak"] = row["achieved_flops"] / peak
        paired_ratios(entry)
    for name, num, den in KEY_RATIOS:
        entry = results["configs"].get(name)
        if not entry:
            continue
        rows = entry["implementations"]
        value = rng = None
        if num == "mae_lesson" and "ours_speedup_paired" in rows.get(den, {}):
            value, rng = rows[den]["ours_speedup_paired"], rows[den].get("ours_speedup_spread")
        elif num == "mae_lesson_compiled" and "compiled_vs_hf_paired" in entry:
            value, rng = entry["compiled_vs_hf_paired"], entry.get("compiled_vs_hf_spread")
        if num not in rows:
            continue  # not timed at this configuration (e.g. no --compile)
        ratios.append({"config": name, "what": f"{LABELS.get(num, num)} / {LABELS.get(den, den)} images/s",
                       "value": value, "spread": rng})
    vitb = results["configs"].get("vit_b16", {}).get("implementations", {}).get("mae_lesson", {})
    if "fraction_of_matmul_peak" in vitb:
        ratios.append({"config": "vit_b16", "what": "mae_lesson eager achieved FLOP/s / fp32 matmul rate of the same round",
                       "value": vitb["fraction_of_matmul_same_round"],
                       "spread": vitb.get("fraction_of_matmul_same_round_spread")})
        ratios.append({"config": "vit_b16", "what": "mae_lesson eager achieved FLOP/s / best fp32 matmul of the run",
                       "value": vitb["fraction_of_matmul_peak"], "spread": None})
    for m in results["mask_tokens"]:
        if m["config"] == "vit_b16":
            ratios.append({"config": "vit_b16", "what": f"encoder fwd+bwd at batch {m['batch']}: all tokens with "
                           f"mask tokens / visible only", "value": m["speedup_paired"],
                           "spread": m.get("speedup_spread")})
    loader = results.get("loader", {})
    if loader.get("vs_model_paired"):
        ratios.append({"config": loader.get("config", "fashion_mnist_tiny"),
                       "what": "BatchLoader images/s / mae_lesson eager training images/s",
                       "value": loader["vs_model_paired"], "spread": loader.get("vs_model_spread")})
    results["key_ratios"] = ratios


def bold_x(value: float, rng: dict[str, float] | None) -> str:
    """``**4.02x** (3.95-4.10)``: a speedup's median in bold, then its min-max over rounds."""
    text = f"**{fmt_spread(value)}x**"
    return f"{text} ({fmt_spread(rng['min'])}-{fmt_spread(rng['max'])})" if rng else text


def versus_hf_table(results: dict[str, Any]) -> str:
    """One row per configuration: its shape, ours and HF images/s, ours ÷ HF with spread and verdict."""
    rows = []
    for name, entry in results["configs"].items():
        cfg, tokens, impls = entry["config"], entry["tokens"], entry["implementations"]
        h, w = (cfg["img_size"], cfg["img_size"]) if isinstance(cfg["img_size"], int) else cfg["img_size"]
        ours, hf = impls.get("mae_lesson", {}), impls.get("hf_sdpa", {})
        rng = hf.get("ours_speedup_spread")
        rows.append([name, f"{h}x{w}x{cfg['in_chans']}", cfg["patch_size"],
                     f"{cfg['embed_dim']}x{cfg['encoder_depth']}",
                     f"{cfg['encoder_num_heads']}x{cfg['embed_dim'] // cfg['encoder_num_heads']}",
                     f"{1 + tokens['L_keep']} / {1 + tokens['L']}", entry["batch"],
                     fmt(ours.get("images_per_s"), 4), fmt(hf.get("images_per_s"), 4),
                     fmt_spread(hf.get("ours_speedup_paired"), rng), verdict(rng) if rng else "-"])
    header = ["config", "image", "patch", "encoder width x depth", "heads x head width", "tokens encoder / decoder",
              "batch", "ours images/s", "HF images/s", "ours ÷ HF: median (min-max over rounds)", "verdict"]
    return md_table(header, rows)


def to_markdown(results: dict[str, Any]) -> str:
    env, peak = results["env"], results["matmul_peak_flops"]
    out = [f"# Training-step benchmark (CPU{', --quick' if results['quick'] else ''})", "",
           f"Command: `{results['command']}`  ",
           f"Machine: {env['cpu']}, {env['threads']} torch threads; torch {env['torch']}, transformers "
           f"{env['transformers']}, vit-pytorch {env['vit_pytorch']}; {results['started']}.  ",
           "Step = zero_grad + forward + backward + AdamW.step (fp32). Implementations interleaved over rounds; "
           "ratios are medians of per-round ratios (side by side), followed by their min-max over rounds.", ""]
    sizes = ", ".join(f"{n}: {fmt(max(v) / 1e9, 4)} GFLOP/s" for n, v in results["matmul"].items())
    out += [f"**fp32 matmul peak** (torch.mm n x n, best of {sum(len(v) for v in results['matmul'].values())} "
            f"timed inside the rounds): **{fmt(peak / 1e9, 4)} GFLOP/s** ({sizes}).", ""]
    out += ["## Ours against Hugging Face at every configuration", "",
            (f"mae_lesson.MAE (eager) ÷ HF ViTMAEForPreTraining (sdpa), images/s, same weights and masks. Verdict "
             f"from the per-round ratios: lead if the smallest is above {LEAD_MIN}, behind if the largest is below "
             f"{BEHIND_MAX}, level if the range holds 1.0 or the median is within {LEVEL_BAND:.0%} of it, otherwise "
             f"a narrow lead (or deficit). Tokens: encoder 1 + L_keep, decoder 1 + L."), "",
            versus_hf_table(results), ""]
    for name, entry in results["configs"].items():
        cfg = entry["config"]
        heads = cfg["encoder_num_heads"]
        timed = "" if entry.get("full_treatment", True) else (
            " Timed: ours (eager) and HF only, no memory probe or mask-token experiment (`--all-impls` adds them).")
        out += [f"## {name}: {cfg['img_size']}px p{cfg['patch_size']} C{cfg['in_chans']}, encoder "
                f"{cfg['embed_dim']}x{cfg['encoder_depth']} ({heads} heads of {cfg['embed_dim'] // heads}), decoder "
                f"{cfg['decoder_embed_dim']}x{cfg['decoder_depth']}, batch {entry['batch']}, "
                f"L={entry['tokens']['L']} (keep {entry['tokens']['L_keep']})", "",
                f"Model FLOPs per training step: {fmt(entry['train_step_flops'] / 1e9, 4)} GFLOP. "
                f"|loss(ours) - loss(HF)| on the same weights and mask: {entry['hf_parity_abs_loss_diff']:.1e}.{timed}",
                ""]
        rows = []
        for impl_name, r in entry["implementations"].items():
            mem = r.get("memory", {})
            mem_s = fmt(mem["step_peak_delta_mb"], 4) if "step_peak_delta_mb" in mem else (
                "error" if "error" in mem else "not measured")
            if "error" in r:
                rows.append([r["label"], "failed", "-", "-", "-", "-", "-", mem_s, r["error"]])
                continue
            ratio = "1 (reference)" if impl_name == "mae_lesson" else fmt_spread(r.get("ours_speedup_paired"),
                                                                                 r.get("ours_speedup_spread"))
            rows.append([r["label"], fmt(r["median_s"] * 1e3, 4), fmt(r["min_s"] * 1e3, 4), fmt(r["max_s"] * 1e3, 4),
                         fmt(r["images_per_s"], 4), ratio,
                         f"{fmt(r['achieved_flops'] / 1e9, 3)} ({r['fraction_of_matmul_peak']:.0%} / "
                         f"{r['fraction_of_matmul_same_round']:.0%})", mem_s,
                         "; ".join(filter(None, [r["notes"], f"compile+warm-up {r['warmup_s']:.0f} s"
                                                 if impl_name.endswith("compiled") else ""]))])
        out += [md_table(["implementation", "median ms/step", "min", "max", "images/s",
                          "ours eager ÷ this (speed): median (min-max over rounds)",
                          "GFLOP/s (of best matmul / of same-round matmul)", "peak RSS Δ MB", "notes"], rows), ""]
    if results["mask_tokens"]:
        rows = [[m["config"], m["batch"], f"{m['tokens_all']} vs {m['tokens_visible']}",
                 fmt(m["with_mask_tokens"]["median_s"] * 1e3, 4), fmt(m["visible_only"]["median_s"] * 1e3, 4),
                 bold_x(m["speedup_paired"], m.get("speedup_spread")), f"{m['flop_ratio']:.2f}x"]
                for m in results["mask_tokens"]]
        out += ["## Encoder with mask tokens vs visible patches only (mask ratio 0.75, forward+backward)", "",
                md_table(["config", "batch", "tokens (all vs visible)", "with mask tokens ms", "visible only ms",
                          "speedup (min-max over rounds)", "matmul FLOP ratio"], rows), ""]
    if results.get("loader", {}).get("median_s"):
        ld = results["loader"]
        ld_config = ld.get("config", "fashion_mnist_tiny")
        model = results["configs"].get(ld_config, {}).get("implementations", {}).get("mae_lesson", {})
        out += [f"## Data loading ({ld_config}, timed in its rounds)", "",
                md_table(["pipeline", "median ms/batch", "images/s", "loader ÷ model (min-max over rounds)"],
                         [[f"BatchLoader, {ld['source']}, batch {ld['batch']}, {ld['augmentation']}",
                           fmt(ld["median_s"] * 1e3, 4), fmt(ld["images_per_s"], 4),
                           bold_x(ld["vs_model_paired"], ld.get("vs_model_spread"))],
                          [f"mae_lesson eager training step ({ld_config})", fmt(model.get("median_s", 0) * 1e3, 4),
                           fmt(model.get("images_per_s"), 4), "1"]]), ""]
    rows = [[t["config"], t["what"], fmt_spread(t["value"], t.get("spread"))] for t in results["key_ratios"]]
    out += ["## Key ratios", "", md_table(["config", "ratio", "value: median (min-max over rounds)"], rows), "",
            f"FLOP count: {FLOP_FORMULA}", "",
            "Memory: each implementation in its own process with glibc's mmap threshold fixed; peak RSS increase "
            "over two training steps after one warm-up step and zero_grad(set_to_none=True), i.e. activations, "
            "gradients and temporaries above weights and AdamW state.", ""]
    return "\n".join(out)
