"""Reading the ablation CSVs: means and spreads over seeds, the paper's claims as data, verdicts, tables, figures.

Everything here is a pure function of CSV rows (lists of dicts of strings, as ``csv.DictReader``
gives them), so it is tested with hand-made numbers and can redraw a report without training.
``experiments/ablations.py`` writes the rows and calls these to write ``*.md`` and ``*.png``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

MEASURES = ("recon_loss", "linear_probe", "knn", "finetune")
ACCURACIES = ("linear_probe", "knn", "finetune")
LEGEND = {"recon_loss": "recon. loss", "linear_probe": "linear probe", "knn": "kNN", "finetune": "fine-tune"}
AGREES, DISAGREES, UNRESOLVED = "agrees", "disagrees", "not resolved at this budget"


def read_rows(csv_path: Path) -> list[dict]:
    """The rows of a CSV as dicts of strings; ``[]`` when the file does not exist."""
    if not Path(csv_path).is_file():
        return []
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    """The whole CSV, atomically: a run killed mid-write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{k: row.get(k, "") for k in columns} for row in rows])
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ means over seeds
@dataclass(frozen=True)
class Stat:
    """A measure over seeds: mean, sample standard deviation (``nan`` for one seed) and count."""

    mean: float
    sd: float
    n: int


def stat(values: list[float]) -> Stat:
    """Mean and sample standard deviation (``ddof=1``) of ``values``."""
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return Stat(statistics.fmean(values), sd, len(values))


def aggregate(rows: list[dict], measures: tuple[str, ...] = MEASURES + ("epoch_seconds",)) -> list[dict]:
    """One entry per ``(ablation, value)``, in first-seen order: ``{"ablation", "value", "seeds", measure: Stat}``.

    Raises ``ValueError`` when a setting holds the same seed twice (two rows would count as two seeds).
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["ablation"], row["value"]), []).append(row)
    summary = []
    for (ablation, value), group in groups.items():
        seeds = [int(r.get("seed") or 0) for r in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{ablation}={value} holds seed(s) {sorted(s for s in set(seeds) if seeds.count(s) > 1)} "
                             f"more than once; delete the duplicate rows from the CSV")
        entry = {"ablation": ablation, "value": value, "seeds": sorted(seeds)}
        entry.update({m: stat([float(r[m]) for r in group]) for m in measures})
        summary.append(entry)
    return summary


# ------------------------------------------------------------------------------ the paper's claims
@dataclass(frozen=True)
class Claim:
    """The paper says ``measure(a) - measure(b)`` has sign ``sign`` (+1, -1, or 0 for "no difference")."""

    ablation: str
    measure: str
    a: str
    b: str
    sign: int
    paper: str  # the paper's numbers or words, ViT-L on ImageNet-1K

    def text(self) -> str:
        relation = {1: ">", -1: "<", 0: "≈"}[self.sign]
        return f"{LEGEND[self.measure]}: {self.a} {relation} {self.b}"


# Table 1 (a: decoder depth, c: mask token, d: target, f: mask sampling) and Figure 5 (mask ratio),
# fine-tune / linear-probe top-1 of ViT-L after 800 epochs. kNN is not in the paper: no claim.
CLAIMS_P7 = [
    Claim("mask_ratio", "linear_probe", "0.75", "0.1", +1, "73.5 vs 54.6 (Fig. 5)"),
    Claim("mask_ratio", "linear_probe", "0.75", "0.25", +1, "rises steadily up to 75% (Fig. 5)"),
    Claim("mask_ratio", "linear_probe", "0.75", "0.5", +1, "rises steadily up to 75% (Fig. 5)"),
    Claim("mask_ratio", "finetune", "0.75", "0.1", +1, "lower at low ratios (Fig. 5)"),
    Claim("mask_ratio", "finetune", "0.75", "0.25", +1, "lower at low ratios (Fig. 5)"),
    Claim("mask_ratio", "finetune", "0.75", "0.5", 0, "40-80% work well (Fig. 5)"),
    Claim("target", "linear_probe", "norm_pix", "pixels", +1, "73.9 vs 73.5 (Table 1d)"),
    Claim("target", "finetune", "norm_pix", "pixels", +1, "85.4 vs 84.9 (Table 1d)"),
    Claim("decoder_depth", "linear_probe", "8", "1", +1, "73.5 vs 65.5 (Table 1a)"),
    Claim("decoder_depth", "linear_probe", "8", "2", +1, "73.5 vs 70.0 (Table 1a)"),
    Claim("decoder_depth", "finetune", "8", "1", 0, "84.9 vs 84.8 (Table 1a)"),
    Claim("encoder_mask_tokens", "linear_probe", "no (MAE)", "yes", +1, "73.5 vs 59.6 (Table 1c)"),
    Claim("encoder_mask_tokens", "finetune", "no (MAE)", "yes", +1, "84.9 vs 84.2 (Table 1c)"),
    Claim("mask_type", "linear_probe", "random", "block", +1, "73.5 vs 63.9 (Table 1f, 75%)"),
    Claim("mask_type", "linear_probe", "random", "grid", +1, "73.5 vs 66.0 (Table 1f)"),
    Claim("mask_type", "finetune", "random", "block", +1, "84.9 vs 82.8 (Table 1f, 75%)"),
    Claim("mask_type", "finetune", "random", "grid", +1, "84.9 vs 84.0 (Table 1f)"),
    Claim("mask_type", "recon_loss", "block", "random", +1, "block is a harder task: higher training loss (§4.1)"),
    Claim("mask_type", "recon_loss", "grid", "random", -1, "grid is an easier task: lower training loss (§4.1)"),
]


def verdict(a: Stat, b: Stat, sign: int, tolerance: float = 0.02) -> tuple[str, float, float]:
    """Whether the measured ``a - b`` agrees with a claim of sign ``sign``; returns ``(verdict, diff, se)``.

    The rule: ``diff = a.mean - b.mean`` and its standard error over independent seeds
    ``se = sqrt(a.sd**2 / a.n + b.sd**2 / b.n)``.

    - A claim of a difference (``sign`` +1 or -1): ``|diff| > 2 se`` with the claim's sign agrees,
      with the opposite sign disagrees; ``|diff| <= 2 se`` is not resolved at this budget.
    - A claim of no difference (``sign`` 0, e.g. fine-tuning insensitive to decoder depth):
      ``|diff| > 2 se`` disagrees; ``|diff| + 2 se <= tolerance`` (the whole interval within
      ``tolerance``, 2 points of accuracy by default) agrees; anything between is not resolved.
    - Fewer than 2 seeds on either side: not resolved (no spread to judge by).

    Two standard errors is a rule of thumb, not a test at a stated confidence: with 3 seeds a side,
    a t-test at 95% would need about 2.8 se. A verdict is a summary of these runs at this budget.
    """
    diff = a.mean - b.mean
    if min(a.n, b.n) < 2:
        return UNRESOLVED, diff, math.nan
    se = math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n)
    if sign == 0:
        if abs(diff) > 2 * se:
            return DISAGREES, diff, se
        return (AGREES if abs(diff) + 2 * se <= tolerance else UNRESOLVED), diff, se
    if abs(diff) > 2 * se:
        return (AGREES if diff * sign > 0 else DISAGREES), diff, se
    return UNRESOLVED, diff, se


def verdicts(summary: list[dict], claims: list[Claim] = CLAIMS_P7) -> list[dict]:
    """``{"claim", "diff", "se", "verdict"}`` for every claim whose two settings are in ``summary``."""
    by_setting = {(e["ablation"], e["value"]): e for e in summary}
    out = []
    for claim in claims:
        a, b = by_setting.get((claim.ablation, claim.a)), by_setting.get((claim.ablation, claim.b))
        if a is None or b is None:
            continue
        word, diff, se = verdict(a[claim.measure], b[claim.measure], claim.sign)
        out.append({"claim": claim, "diff": diff, "se": se, "verdict": word})
    return out


# ------------------------------------------------------------------------------ the seeded report
def fmt(s: Stat, measure: str) -> str:
    """``mean ± sd`` in percent for accuracies, in loss units for the loss; no ``±`` for one seed."""
    scale, digits = (1, 3) if measure == "recon_loss" else (100, 1)
    if math.isnan(s.sd):
        return f"{scale * s.mean:.{digits}f}"
    return f"{scale * s.mean:.{digits}f} ± {scale * s.sd:.{digits}f}"


def settings_table(summary: list[dict]) -> str:
    """Markdown: one row per setting, every measure as mean ± sd over its seeds."""
    lines = ["| ablation | setting | seeds | recon. loss | linear probe | kNN | fine-tune | s / epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for e in summary:
        seeds = ",".join(str(s) for s in e["seeds"])
        lines.append(f"| {e['ablation'].replace('_', ' ')} | {e['value']} | {seeds} | "
                     + " | ".join(fmt(e[m], m) for m in MEASURES) + f" | {e['epoch_seconds'].mean:.0f} |")
    return "\n".join(lines) + "\n"


def verdict_table(judged: list[dict]) -> str:
    """Markdown: one row per claim, the paper's numbers beside ours (diff ± se over seeds) and the verdict."""
    lines = ["| ablation | claim (a vs b) | paper (ViT-L, ImageNet) | ours: diff ± se | verdict |",
             "|---|---|---|---|---|"]
    for j in judged:
        claim, scale = j["claim"], (1 if j["claim"].measure == "recon_loss" else 100)
        digits = 3 if scale == 1 else 1
        se = "n/a" if math.isnan(j["se"]) else f"{scale * j['se']:.{digits}f}"
        lines.append(f"| {claim.ablation.replace('_', ' ')} | {claim.text()} | {claim.paper} | "
                     f"{scale * j['diff']:+.{digits}f} ± {se} | {j['verdict']} |")
    return "\n".join(lines) + "\n"


def markdown_report(summary: list[dict], judged: list[dict], title: str) -> str:
    """The settings table (mean ± sd over seeds) and the verdict table, as markdown."""
    return "\n".join([
        f"# {title}", "", "Mean ± sample standard deviation over the seeds listed; accuracies in %. "
        "The norm-pix loss is in normalised units, not comparable with the pixel rows.", "",
        settings_table(summary), "## Against the paper", "",
        "diff = ours(a) - ours(b), se = sqrt(sd_a²/n_a + sd_b²/n_b); |diff| > 2 se with the paper's sign "
        "agrees, with the opposite sign disagrees, else not resolved at this budget (a claim of no "
        "difference agrees when |diff| + 2 se ≤ 2 points). Rule: `verdict` in experiments/ablation_report.py.",
        "", verdict_table(judged)]).rstrip("\n") + "\n"


def seeded_figure(summary: list[dict], title: str) -> plt.Figure:
    """One column per ablation: accuracies (top) and reconstruction loss (bottom), mean ± 1 sd over seeds.

    Each row has one y-scale for all its panels, so a height compares across ablations: a loss gap of
    0.01 looks as small in the decoder-depth panel as it is beside the mask ratio's 0.25 to 0.62.
    """
    ablations = list(dict.fromkeys(e["ablation"] for e in summary))
    fig, axes = plt.subplots(2, len(ablations), figsize=(2.9 * len(ablations), 5.0), squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1]})
    for row in axes:
        for ax in row[1:]:
            ax.sharey(row[0])
            ax.tick_params(labelleft=False)
    for col, name in enumerate(ablations):
        sel = [e for e in summary if e["ablation"] == name]
        xs = range(len(sel))
        top, bottom = axes[0, col], axes[1, col]
        for offset, (metric, marker) in zip((-0.1, 0.0, 0.1), zip(ACCURACIES, "os^")):
            # A small sideways offset per measure keeps the error bars of close points apart.
            top.errorbar([x + offset for x in xs], [100 * e[metric].mean for e in sel],
                         yerr=[0 if math.isnan(e[metric].sd) else 100 * e[metric].sd for e in sel],
                         marker=marker, ms=4, capsize=2, lw=1, label=LEGEND[metric])
        bottom.errorbar(list(xs), [e["recon_loss"].mean for e in sel],
                        yerr=[0 if math.isnan(e["recon_loss"].sd) else e["recon_loss"].sd for e in sel],
                        marker="D", ms=4, capsize=2, lw=1, color="C3")
        top.set_title(name.replace("_", " "), fontsize=10)
        if name == "target":
            bottom.set_title("norm_pix: loss in normalised units", fontsize=7)
        for ax in (top, bottom):
            ax.set_xticks(list(xs), [e["value"] for e in sel], fontsize=8)
            ax.set_xlim(-0.5, len(sel) - 0.5)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy %\n(one scale, all panels)")
    axes[1, 0].set_ylabel("recon. loss\n(one scale, all panels)")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper right", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def draw_seeded(summary: list[dict], path: Path, title: str) -> Path:
    """``seeded_figure`` saved to ``path`` as a small PNG."""
    save_small_png(seeded_figure(summary, title), path)
    return path


def save_small_png(fig: plt.Figure, path: Path, dpi: int = 150) -> None:
    """Save at ``dpi`` with a 128-colour palette: a third of the bytes of matplotlib's RGBA, same look."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi)
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(colors=128).save(path, optimize=True)


# ------------------------------------------------------------------------------ the budget probe
def choose_budget(rows: list[dict], margin: float = 0.05) -> float | None:
    """The sweep's budget: effects separated from random init while the measures still rise.

    ``rows`` are the budget probe's (``budget`` in epochs, 0 = the random-init encoder, and the
    three accuracies as fractions). The choice is the smallest budget ``k > 0`` at which

    - every accuracy (linear probe, kNN, fine-tune) is at least ``margin`` above the random-init
      encoder's (5 points by default: more than the 4.3 points between two seeds of one setting's
      linear probe in the patch-4 sweep), and
    - every accuracy is higher still at the largest budget probed (the curve has not flattened).

    ``None`` when no budget qualifies. One seed: read the curve too.
    """
    by_budget = {float(r["budget"]): {m: float(r[m]) for m in ACCURACIES} for r in rows}
    if 0.0 not in by_budget or len(by_budget) < 2:
        raise ValueError("the budget probe needs the random-init point (0 epochs) and at least one budget")
    random_init, last = by_budget[0.0], by_budget[max(by_budget)]
    for k in sorted(b for b in by_budget if b > 0):
        separated = all(by_budget[k][m] - random_init[m] >= margin for m in ACCURACIES)
        rising = all(last[m] > by_budget[k][m] for m in ACCURACIES)
        if separated and rising:
            return k
    return None


def draw_budget(rows: list[dict], path: Path, title: str, chosen: float | None = None) -> Path:
    """Accuracies and reconstruction loss against pretraining epochs (0 = the random-init encoder);
    a dashed line at the ``chosen`` budget."""
    rows = sorted(rows, key=lambda r: float(r["budget"]))
    epochs = [float(r["budget"]) for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for metric, marker in zip(ACCURACIES, "os^"):
        ax.plot(epochs, [100 * float(r[metric]) for r in rows], marker=marker, label=LEGEND[metric])
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle="--", lw=1, label=f"chosen: {chosen:g} epochs")
    ax.set(xlabel="pretraining epochs (0 = random init)", ylabel="test accuracy %", title="accuracy")
    ax.legend(fontsize=8)
    trained = [r for r in rows if float(r["budget"]) > 0]
    ax2.plot([float(r["budget"]) for r in trained], [float(r["recon_loss"]) for r in trained], "D-", color="C3")
    ax2.set(xlabel="pretraining epochs", ylabel="test recon. loss", title="the pretext task")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_small_png(fig, path)
    return path


# ------------------------------------------------------------------------------ the norm-pix study
def normpix_report(rows: list[dict]) -> str:
    """Markdown: each check (a fine-tune variant or a feature scale) per encoder over seeds, and norm-pix
    against pixels with the sweep's rule (resolved when |diff| > 2 se)."""
    checks = list(dict.fromkeys((r["check"], r["finetune_steps"], r["finetune_blr"]) for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    lines = ["# Norm-pix against pixels: fine-tuning and feature scale", "",
             "Mean ± sample sd over seeds. Fine-tune rows: test accuracy %. Feature rows, on the test images: "
             "`cls_*` the frozen cls feature after the encoder's norm (what the probe sees), `pool_*` the mean over "
             "patch tokens that the classifier's fc_norm receives when fine-tuning starts; `*_l2_norm` the mean L2 "
             "norm of a feature vector, `*_dim_std` the mean over dimensions of each dimension's std over images "
             "(the cls feature leaves a LayerNorm, so its L2 norm is near sqrt(D) x its gain by construction). "
             "diff = norm_pix - pixels ± its standard error over seeds.", "",
             "| check | " + " | ".join(targets) + " | norm_pix - pixels | beyond 2 se |",
             "|---|" + "---|" * len(targets) + "---|---|"]
    for check, steps, blr in checks:
        stats = {t: stat(values) for t in targets
                 if (values := [float(r["value"]) for r in rows
                                if (r["check"], r["finetune_steps"], r["finetune_blr"], r["target"])
                                == (check, steps, blr, t)])}
        accuracy = check == "finetune"
        scale, digits = (100, 1) if accuracy else (1, 3)

        def cell(s: Stat) -> str:
            return f"{scale * s.mean:.{digits}f}" + ("" if math.isnan(s.sd) else f" ± {scale * s.sd:.{digits}f}")

        diff_cell, beyond = "", ""
        if "pixels" in stats and "norm_pix" in stats:
            word, diff, se = verdict(stats["norm_pix"], stats["pixels"], +1)
            diff_cell = f"{scale * diff:+.{digits}f}" + ("" if math.isnan(se) else f" ± {scale * se:.{digits}f}")
            beyond = "n/a (one seed)" if math.isnan(se) else ("no" if word == UNRESOLVED else "yes")
        name = f"fine-tune {steps} steps, blr {float(blr):g}" if accuracy else check
        lines.append(f"| {name} | " + " | ".join(cell(stats[t]) if t in stats else "" for t in targets)
                     + f" | {diff_cell} | {beyond} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the one-seed patch-4 figure
def panel_order(row: dict, position: int) -> tuple[float, int]:
    """Plot order within a panel: by pretraining epochs for the schedule, else the CSV's order."""
    return (float(row["epochs"]), 0) if row["ablation"] == "schedule" else (0.0, position)


def tick_label(row: dict) -> str:
    """The setting, plus what the panel is about: epochs for the schedule, time for cost ablations."""
    if row["ablation"] == "schedule":
        return f"{row['value']}\n{float(row['epochs']):.1f} ep"
    if row["ablation"] in ("encoder_mask_tokens", "encoder"):
        return f"{row['value']}\n{float(row['epoch_seconds']):.0f} s/ep"
    return row["value"]


def draw_figures(csv_path: Path, out: Path, n_test: int = 2000) -> list[Path]:
    """The one-seed sweep (``ablations.csv``): probe, kNN and fine-tune accuracy against the setting.

    Every point carries an error bar of one standard error of an accuracy measured on ``n_test``
    test images, ``sqrt(p * (1 - p) / n_test)``, and every panel shares one accuracy axis, so
    heights and gaps compare across panels. Notebook 09 draws the committed sweep with it.
    """
    rows = read_rows(csv_path)
    ablations = list(dict.fromkeys(r["ablation"] for r in rows))
    if not ablations:
        return []
    metrics = (("linear_probe", "o"), ("knn", "s"), ("finetune", "^"))
    values = [float(r[m]) for r in rows for m, _ in metrics]
    margin = 2 * max((v * (1 - v) / n_test) ** 0.5 for v in values)
    low, high = 100 * (min(values) - margin), 100 * (max(values) + margin)
    cols = 3
    n_rows = (len(ablations) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 2.9 * n_rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, ablations):
        positions = [(r, i) for i, r in enumerate(rows) if r["ablation"] == name]
        sel = [r for r, _ in sorted(positions, key=lambda pair: panel_order(*pair))]
        xs = range(len(sel))
        for offset, (metric, marker) in zip((-0.08, 0.0, 0.08), metrics):
            acc = [float(r[metric]) for r in sel]
            se = [100 * (a * (1 - a) / n_test) ** 0.5 for a in acc]
            ax.errorbar([x + offset for x in xs], [100 * a for a in acc], yerr=se, marker=marker, ms=4, capsize=2,
                        lw=1, label=LEGEND[metric])
        ax.set_xticks(list(xs), [tick_label(r) for r in sel], fontsize=7)
        ax.set_xlim(-0.5, len(sel) - 0.5)
        ax.set_ylim(low, high)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy %", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(ablations):]:
        ax.axis("off")
    fig.suptitle(f"MAE ablations on Fashion-MNIST (same pretraining budget per run; bars: one standard error "
                 f"on {n_test:,} test images)", fontsize=10)
    fig.tight_layout()
    path = Path(out) / "ablations.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]
