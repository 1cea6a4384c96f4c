"""The paper in miniature: MAE's key ablations (Table 1, Figure 5) on Fashion-MNIST, with seeds.

Each setting pretrains one model config with one budget and recipe, changing one thing at a time,
then measures test reconstruction loss, a linear probe and kNN on frozen cls features (fitted on
the first ``--probe-images`` training images), and a short fine-tune. One CSV row per (setting,
seed), written as each run ends: a row already in the CSV is not redone (delete it to redo it), a
finished pretraining run is reused from its folder, and an interrupted one starts over. A CSV's
settings are recorded beside it (``<stem>.settings.json``): resuming it with other settings is refused
(``--overwrite`` starts its rows over), and one sweep at a time writes into ``--out`` (its ``.lock``).
Tables, figures and verdicts are drawn from the CSV (``experiments/ablation_report.py``).

    python -m experiments.ablations --only budget    # 1. the default setting at 1..5 epochs: choose the budget
    python -m experiments.ablations                  # 2. the seeded sweep on the p7 model at that budget
    python -m experiments.ablations --only normpix   # 3. why norm-pix encoders fine-tune worse
    python -m experiments.ablations --sweep p4       # the earlier one-seed patch-4 sweep (ablations.csv)
    python -m experiments.ablations --only target --values norm_pix --seeds 3 --epochs 4 --out runs/mine
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments import ablation_report as report
from experiments.ablation_report import LEGEND, draw_figures, read_rows, tick_label, write_rows  # noqa: F401  (notebook 09)
from experiments.ablation_runs import (  # noqa: F401  (EncoderWithMaskTokens: notebook 09 and the tests)
    RECIPE, EncoderWithMaskTokens, Sweep, eval_cost, evaluate_run, feature_scales, finetune_accuracy, log,
    needs_pretraining, pretrain_cost, pretrain_setting, print_plan, run_dir, run_name, steps_for)
from mae_lesson.data import DATASETS, load_dataset
from mae_lesson.errors import RunError, command_line_errors
from mae_lesson.runfolder import acquire_lock, check_out_path, release_lock

ROOT = Path(__file__).resolve().parents[1]

SHIPPED_CHECKPOINT = "data/mae_fashion_mnist_tiny.pt"
COLUMNS = ["ablation", "value", "seed", "recon_loss", "linear_probe", "knn", "finetune", "epoch_seconds",
           "pretrain_seconds", "eval_seconds", "steps", "epochs", "overrides"]
BUDGET_COLUMNS = ["budget", "epochs", "steps", "seed", "recon_loss", "linear_probe", "knn", "finetune",
                  "epoch_seconds", "pretrain_seconds", "eval_seconds"]
NORMPIX_COLUMNS = ["seed", "target", "check", "finetune_steps", "finetune_blr", "value", "seconds"]

# (ablation, value, model overrides, run options); the default setting is listed where the paper's
# table shows it but trained once per seed (same overrides -> same run).
SETTINGS_P7: list[tuple[str, str, dict, dict]] = (
    [("mask_ratio", str(r), {"mask_ratio": r}, {}) for r in (0.1, 0.25, 0.5, 0.75, 0.9)]
    + [("target", "pixels", {"norm_pix_loss": False}, {}), ("target", "norm_pix", {"norm_pix_loss": True}, {})]
    + [("decoder_depth", str(d), {"decoder_depth": d}, {}) for d in (1, 2, 4, 8)]
    + [("encoder_mask_tokens", "no (MAE)", {}, {}), ("encoder_mask_tokens", "yes", {}, {"encoder_mask_tokens": True})]
    # 4x4 patches: an even grid, so grid sampling works at 28x28 without resizing.
    + [("mask_type", t, {"mask_type": t}, {}) for t in ("random", "block", "grid")]
)
# The earlier one-seed sweep on the patch-4 teaching model (ablations.csv, notebook 09).
SETTINGS_P4: list[tuple[str, str, dict, dict]] = (
    [("mask_ratio", str(r), {"mask_ratio": r}, {}) for r in (0.1, 0.25, 0.5, 0.75, 0.9)]
    + [("target", "pixels", {"norm_pix_loss": False}, {}), ("target", "norm_pix", {"norm_pix_loss": True}, {})]
    + [("encoder_mask_tokens", "no (MAE)", {}, {}), ("encoder_mask_tokens", "yes", {}, {"encoder_mask_tokens": True})]
    # x0 is the random-init encoder (no pretraining); "shipped" evaluates data/'s 20-epoch checkpoint.
    + [("schedule", f"x{m}", {}, {"steps_multiplier": m}) for m in (0, 1, 2)]
    + [("schedule", "shipped", {}, {"checkpoint": SHIPPED_CHECKPOINT})]
    + [("decoder_depth", str(d), {"decoder_depth": d}, {}) for d in (1, 2, 4, 8)]
    + [("decoder_width", str(w), {"decoder_embed_dim": w}, {}) for w in (32, 64, 128)]
    + [("encoder", "w128 p4", {}, {}), ("encoder", "w64 p4", {"embed_dim": 64}, {}),
       ("encoder", "w128 p7", {"patch_size": 7}, {})]
    # Grid sampling needs an even patch grid: 32x32 images (8x8 patches of 4).
    + [("mask_type", t, {"mask_type": t, "img_size": 32}, {}) for t in ("random", "block", "grid")]
    + [("schedule", "x4", {}, {"steps_multiplier": 4}), ("encoder", "w192 p4", {"embed_dim": 192}, {})]
)

SWEEPS = {
    # The main job's recipe, its warm-up share (2 of 50 epochs) and cosine fitted to each run's budget.
    "p7": Sweep(config="fashion_mnist_p7", settings=SETTINGS_P7, seeds=(0, 1, 2), csv="ablations_p7.csv", tag="p7",
                steps=None, warmup_fraction=RECIPE["warmup_epochs"] / RECIPE["epochs"], test_images=None,
                claims=report.CLAIMS_P7),
    # As committed: 250 steps of 256 images, 5% warm-up, seed 0, 2,000 test images.
    "p4": Sweep(config="fashion_mnist_tiny", settings=SETTINGS_P4, seeds=(0,), csv="ablations.csv", tag="p4",
                steps=250, warmup_fraction=0.05, test_images=2000, claims=None),
}


def resolve_budget(args: argparse.Namespace, sweep: Sweep) -> tuple[int, str]:
    """Optimizer steps per run and its folder label: ``--steps``, ``--epochs``, the sweep's own, or the
    budget probe's choice (``budget_<tag>.csv``, ``report.choose_budget``)."""
    if args.steps is not None:
        return args.steps, f"s{args.steps}"
    if args.epochs is None and sweep.steps is not None:
        return sweep.steps, f"s{sweep.steps}"
    if args.epochs is None:
        path = Path(args.out) / f"budget_{sweep.tag}.csv"
        rows = [r for r in read_rows(path) if int(r["seed"]) == args.seeds[0]]
        if len(rows) < len(args.budget_epochs) + 1:
            raise SystemExit(f"no budget chosen: {path} holds {len(rows)} of the budget probe's "
                             f"{len(args.budget_epochs) + 1} points. Run `python -m experiments.ablations --only "
                             f"budget` first, or pass --epochs N")
        args.epochs = report.choose_budget(rows, args.budget_margin / 100)
        if args.epochs is None:
            raise SystemExit(f"no budget in {path} has every accuracy {args.budget_margin:g} points above random "
                             f"init and still rising: probe longer budgets (--budget-epochs), lower --budget-margin, "
                             f"or pass --epochs N")
        log(f"budget: {args.epochs:g} epochs, chosen from {path} (report.choose_budget, margin "
            f"{args.budget_margin:g} points; --epochs N to choose)")
    return steps_for(args, args.epochs), f"e{args.epochs:g}"


# Arguments that decide every number in a row (the budget is checked row by row in run_sweep): rows
# measured with others cannot share a CSV, so a resume that changes one is refused.
ROW_SETTINGS = ("batch_size", "blr", "train_images", "test_images", "probe_images", "finetune_steps", "finetune_blr",
                "finetune_crop")


def open_results(args: argparse.Namespace, sweep: Sweep, csv_path: Path) -> list[dict]:
    """The rows of ``csv_path`` to resume from, after checking this call's settings against the CSV's.

    The settings are kept in ``<stem>.settings.json`` beside it, written with the CSV's first row
    (a CSV from before they were recorded is not checked). ``--overwrite`` deletes the CSV (nothing
    else) and records this call's settings, so the study starts its rows over.
    """
    recorded = csv_path.with_suffix(".settings.json")
    settings = {"sweep": sweep.tag, **{name: getattr(args, name) for name in ROW_SETTINGS}}
    if args.overwrite:  # (a plan only shows what it would do)
        if not args.plan_only:
            csv_path.unlink(missing_ok=True)
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            recorded.write_text(json.dumps(settings, indent=1) + "\n")
        return []
    rows = read_rows(csv_path)
    try:
        stored = json.loads(recorded.read_text())
    except FileNotFoundError:
        stored = None
    except (OSError, ValueError):
        raise RunError(f"{recorded} is not the JSON of a sweep's settings: restore it, or start {csv_path.name}'s "
                       f"rows over with --overwrite") from None
    changed = [f"{name} {stored.get(name)!r} there, {value!r} now" for name, value in settings.items()
               if stored is not None and stored.get(name) != value]
    if changed:
        raise RunError(f"{csv_path} holds rows measured with other settings ({'; '.join(changed)}): resume with its "
                       f"settings, start its rows over with --overwrite, or write elsewhere (--out or --csv)")
    if stored is None and not rows and not args.plan_only:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(settings, indent=1) + "\n")
    return rows


# ------------------------------------------------------------------------------ the three studies
def run_sweep(args: argparse.Namespace, sweep: Sweep) -> Path:
    """Every selected (setting, seed) not yet in the CSV, seeds outermost, then the report."""
    csv_path = Path(args.csv) if args.csv else Path(args.out) / sweep.csv
    rows = open_results(args, sweep, csv_path)
    steps, label = resolve_budget(args, sweep)
    for row in rows:  # one budget per CSV (the schedule rows of p4 have their own)
        own = "steps_multiplier" in row["overrides"] or "checkpoint" in row["overrides"]
        if not own and int(row["steps"]) != steps:
            raise SystemExit(f"{csv_path} holds runs of {row['steps']} steps and this call asks for {steps}: pass "
                             f"the same budget, start its rows over with --overwrite, or write elsewhere (--out or "
                             f"--csv)")
    done = {(r["ablation"], r["value"], int(r.get("seed") or 0)) for r in rows}
    cache = {(r["overrides"], int(r.get("seed") or 0)): r for r in rows}  # a run shared by several rows
    todo = [(seed, s) for seed in args.seeds for s in sweep.settings
            if (not args.only or s[0] in args.only) and (not args.values or s[1] in args.values)
            and (s[0], s[1], seed) not in done]
    runs = {(run_name(sweep.config, s[2], s[3]), seed): s for seed, s in todo}
    runs = {key: s for key, s in runs.items() if key not in cache}
    dirs = {key: run_dir(args, sweep, label, s[2], s[3], key[1]) for key, s in runs.items()}
    fresh = [key for key, s in runs.items()
             if needs_pretraining(args, sweep, s[2], s[3], key[1], steps * s[3].get("steps_multiplier", 1), dirs[key])]
    seconds = (sum(pretrain_cost(sweep, runs[k][2], runs[k][3], steps, args) for k in fresh)
               + len(runs) * eval_cost(args))
    print_plan(f"{len(todo)} row(s) of {csv_path.name} at {steps} steps ({label})", len(runs), len(fresh), seconds)
    if args.plan_only:
        return csv_path
    for i, (seed, (ablation, value, overrides, options)) in enumerate(todo, 1):
        key = (run_name(sweep.config, overrides, options), seed)
        if key not in cache:
            model, timing = pretrain_setting(args, sweep, overrides, options, seed,
                                             steps * options.get("steps_multiplier", 1), dirs[key])
            scores = evaluate_run(model, args, seed)
            cache[key] = {**{k: f"{v:.4f}" for k, v in scores.items()}, "overrides": key[0], "seed": seed,
                          "steps": timing["steps"], "epochs": f"{timing['epochs']:.2f}",
                          **{k: f"{timing[k]:.1f}" for k in ("pretrain_seconds", "epoch_seconds")},
                          "eval_seconds": f"{scores['eval_seconds']:.1f}"}
        rows.append({**cache[key], "ablation": ablation, "value": value})
        write_rows(csv_path, rows, COLUMNS)
        row = rows[-1]
        log(f"{i}/{len(todo)} {ablation}={value} seed {seed}: probe {row['linear_probe']}, kNN {row['knn']}, "
            f"fine-tune {row['finetune']}, recon {row['recon_loss']} ({row['pretrain_seconds']} s pretraining, "
            f"{row['eval_seconds']} s evaluation)")
    if todo:
        write_sweep_report(csv_path, sweep)
    return csv_path


def write_sweep_report(csv_path: Path, sweep: Sweep) -> list[Path]:
    """``<stem>.md`` and ``<stem>.png`` for a seeded sweep; the one-seed figure for the p4 sweep."""
    if sweep.claims is None:
        return draw_figures(csv_path, csv_path.parent)
    rows = read_rows(csv_path)
    if not rows:
        return []
    summary = report.aggregate(rows)
    judged = report.verdicts(summary, sweep.claims)
    seeds = sorted({int(r["seed"]) for r in rows})
    title = (f"MAE ablations, {sweep.config} on Fashion-MNIST: {rows[0]['epochs']} epochs of pretraining per run, "
             f"seeds {', '.join(map(str, seeds))}")
    md, png = csv_path.with_suffix(".md"), csv_path.with_suffix(".png")
    md.write_text(report.markdown_report(summary, judged, title))
    report.draw_seeded(summary, png, title + " (bars: ±1 sd over seeds)")
    for j in judged:
        log(f"{j['claim'].ablation}: {j['claim'].text()}: {j['verdict']}")
    log(f"wrote {md}, {png}")
    return [md, png]


def run_budget(args: argparse.Namespace, sweep: Sweep) -> Path:
    """The default setting pretrained for each of ``--budget-epochs`` (own schedule each) and at random init."""
    csv_path = Path(args.out) / f"budget_{sweep.tag}.csv"
    rows, seed = open_results(args, sweep, csv_path), args.seeds[0]
    done = {(float(r["budget"]), int(r["seed"])) for r in rows}
    todo = [e for e in [0.0, *args.budget_epochs] if (e, seed) not in done]
    dirs = {e: run_dir(args, sweep, f"e{e:g}", {}, {}, seed) for e in todo}
    fresh = [e for e in todo if needs_pretraining(args, sweep, {}, {}, seed, steps_for(args, e), dirs[e])]
    seconds = sum(pretrain_cost(sweep, {}, {}, steps_for(args, e), args) for e in fresh) + len(todo) * eval_cost(args)
    print_plan(f"budget probe, {len(todo)} point(s) of {csv_path.name}", len(todo), len(fresh), seconds)
    if args.plan_only:
        return csv_path
    for e in todo:
        model, timing = pretrain_setting(args, sweep, {}, {}, seed, steps_for(args, e), dirs[e])
        scores = evaluate_run(model, args, seed)
        rows.append({"budget": f"{e:g}", "seed": seed, "steps": timing["steps"], "epochs": f"{timing['epochs']:.2f}",
                     **{k: f"{v:.4f}" for k, v in scores.items() if k != "eval_seconds"},
                     **{k: f"{timing[k]:.1f}" for k in ("pretrain_seconds", "epoch_seconds")},
                     "eval_seconds": f"{scores['eval_seconds']:.1f}"})
        rows.sort(key=lambda r: (int(r["seed"]), float(r["budget"])))
        write_rows(csv_path, rows, BUDGET_COLUMNS)
        log(f"{e:g} epochs: probe {scores['linear_probe']:.4f}, kNN {scores['knn']:.4f}, "
            f"fine-tune {scores['finetune']:.4f}, recon {scores['recon_loss']:.4f}")
    write_budget_report(csv_path, sweep, seed, args.budget_margin)
    return csv_path


def write_budget_report(csv_path: Path, sweep: Sweep, seed: int, margin: float) -> None:
    """The curve printed and drawn (``budget_<tag>.png``) with the chosen budget."""
    rows = [r for r in read_rows(csv_path) if int(r["seed"]) == seed]
    if not rows:
        return
    # choose_budget needs the random-init point and one budget; an interrupted probe may lack them.
    can_choose = len(rows) > 1 and any(float(r["budget"]) == 0 for r in rows)
    chosen = report.choose_budget(rows, margin / 100) if can_choose else None
    report.draw_budget(rows, csv_path.with_suffix(".png"), f"{sweep.config}, default setting, seed {seed}: each "
                       f"budget its own warm-up and cosine", chosen)
    print("\nepochs   probe %   kNN %   fine-tune %   recon loss")
    for r in sorted(rows, key=lambda r: float(r["budget"])):
        print(f"{r['budget']:>6} {100 * float(r['linear_probe']):>9.1f} {100 * float(r['knn']):>7.1f} "
              f"{100 * float(r['finetune']):>13.1f} {float(r['recon_loss']):>12.4f}")
    if chosen is None:
        print(f"\nno budget has every accuracy {margin:g} points above random init and still rising: probe "
              f"longer budgets (--budget-epochs) or pass --epochs N")
    else:
        print(f"\nchosen budget: {chosen:g} epochs, the smallest with every accuracy {margin:g} points or more above "
              f"random init and still rising at the largest budget (report.choose_budget). One seed: read the "
              f"curve above too. The sweep and the norm-pix study use it when run without --epochs.")


NORMPIX_ENCODERS = {"pixels": {"norm_pix_loss": False}, "norm_pix": {"norm_pix_loss": True}, "random_init": None}


def run_normpix(args: argparse.Namespace, sweep: Sweep) -> Path:
    """Pixels, norm-pix and random-init encoders per seed, at the sweep's budget (the sweep's own runs):
    the standard fine-tune, 3x longer, at half and double its lr, and the scale of the frozen features."""
    csv_path = Path(args.out) / f"normpix_{sweep.tag}.csv"
    rows = open_results(args, sweep, csv_path)
    steps, label = resolve_budget(args, sweep)
    s, b = args.finetune_steps, args.finetune_blr
    variants = [(s, b), (3 * s, b), (s, b / 2), (s, 2 * b)]
    done = {(int(r["seed"]), r["target"], r["check"], r["finetune_steps"], r["finetune_blr"]) for r in rows}
    jobs: dict[tuple[int, str], list] = {}  # (seed, encoder) -> fine-tune (steps, blr) pairs and/or "scales"
    for seed in args.seeds:
        for target in NORMPIX_ENCODERS:
            todo = [v for v in variants if (seed, target, "finetune", str(v[0]), f"{v[1]:g}") not in done]
            todo += ["scales"] if (seed, target, "cls_l2_norm", "", "") not in done else []
            if todo:
                jobs[(seed, target)] = todo
    budget = {target: 0 if o is None else steps for target, o in NORMPIX_ENCODERS.items()}
    dirs = {(seed, t): run_dir(args, sweep, label, NORMPIX_ENCODERS[t] or {}, {}, seed) for seed, t in jobs}
    fresh = [(seed, t) for seed, t in jobs
             if needs_pretraining(args, sweep, NORMPIX_ENCODERS[t] or {}, {}, seed, budget[t], dirs[(seed, t)])]
    seconds = (sum(pretrain_cost(sweep, NORMPIX_ENCODERS[t], {}, steps, args) for _, t in fresh)
               + sum(2 * eval_cost(args, 0, probe=False) if v == "scales" else eval_cost(args, v[0], probe=False)
                     for todo in jobs.values() for v in todo))
    print_plan(f"norm-pix study at {steps} steps ({label}), {len(jobs)} encoder(s)", len(jobs), len(fresh), seconds)
    if args.plan_only:
        return csv_path
    for (seed, target), todo in jobs.items():
        model, _ = pretrain_setting(args, sweep, NORMPIX_ENCODERS[target] or {}, {}, seed, budget[target],
                                    dirs[(seed, target)])
        for job in todo:
            tick = time.perf_counter()
            if job == "scales":
                found = {check: (value, "", "") for check, value in feature_scales(model, args.test).items()}
            else:
                found = {"finetune": (finetune_accuracy(model, args, seed, *job), str(job[0]), f"{job[1]:g}")}
            for check, (value, ft_steps, ft_blr) in found.items():
                rows.append({"seed": seed, "target": target, "check": check, "finetune_steps": ft_steps,
                             "finetune_blr": ft_blr, "value": f"{value:.4f}",
                             "seconds": f"{time.perf_counter() - tick:.1f}"})
            write_rows(csv_path, rows, NORMPIX_COLUMNS)
            log(f"seed {seed} {target}: " + ", ".join(
                f"{check} {value:.4f}" + (f" ({ft_steps} steps, blr {ft_blr})" if ft_steps else "")
                for check, (value, ft_steps, ft_blr) in found.items()))
    md = csv_path.with_suffix(".md")
    md.write_text(report.normpix_report(read_rows(csv_path)))
    log(f"wrote {md}")
    return csv_path


# ------------------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default="p7",
                        help="p7: the seeded sweep on the default CPU model; p4: the earlier one-seed patch-4 sweep")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only these ablations, or one study: budget (the budget probe) or normpix")
    parser.add_argument("--values", nargs="*", default=None,
                        help="run only these values (e.g. --only target --values norm_pix)")
    parser.add_argument("--seeds", "--seed", nargs="+", type=int, default=None, help="default: the sweep's (p7: 0 1 2)")
    parser.add_argument("--epochs", type=float, default=None,
                        help="pretraining epochs per run (p7 default: the budget probe's choice)")
    parser.add_argument("--steps", type=int, default=None,
                        help="pretraining optimizer steps per run (replaces --epochs; smoke runs)")
    parser.add_argument("--budget-epochs", nargs="+", type=float, default=[1, 2, 3, 4, 5],
                        help="the budget probe's budgets, in epochs (each its own run and schedule)")
    parser.add_argument("--budget-margin", type=float, default=5.0,
                        help="points every accuracy must gain over random init at the chosen budget (default 5)")
    parser.add_argument("--out", default=str(ROOT / "experiments"),
                        help="CSVs, tables and figures; run folders in OUT/runs")
    parser.add_argument("--csv", default=None,
                        help="the sweep's CSV (default: OUT/ablations_p7.csv; OUT/ablations.csv for p4)")
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--blr", type=float, default=RECIPE["blr"])
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--test-images", type=int, default=None,
                        help="default: the sweep's (p7: all 10,000; p4: 2,000)")
    parser.add_argument("--probe-images", type=int, default=10000)
    parser.add_argument("--finetune-steps", type=int, default=60)
    # A short fine-tune needs a bolder lr and milder crops than FinetuneArgs' defaults (notebook 07).
    parser.add_argument("--finetune-blr", type=float, default=4e-3)
    parser.add_argument("--finetune-crop", type=float, default=0.8, help="RandomResizedCrop scale lower bound")
    parser.add_argument("--data-root", default=str(ROOT / "data"))
    parser.add_argument("--dataset", default="fashion_mnist",
                        help=f"a registered dataset ({', '.join(DATASETS)}) or a folder of class sub-folders; the "
                             f"sweep's config must fit its images (default: %(default)s)")
    parser.add_argument("--figures-only", action="store_true", help="redraw tables and figures from the CSVs")
    parser.add_argument("--overwrite", action="store_true",
                        help="start the study's CSV over (deletes its rows and recorded settings; finished runs are "
                             "still reused). Without it a CSV is resumed, and refused if its settings differ")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and its time estimate, run nothing")
    args = parser.parse_args(argv)
    sweep = SWEEPS[args.sweep]
    studies = {"budget", "normpix"}
    known = {a: [v for a2, v, _, _ in sweep.settings if a2 == a] for a, _, _, _ in sweep.settings}
    for name in args.only or []:
        if name not in known and name not in studies:
            parser.error(f"unknown ablation {name!r}; choose from {', '.join(known)} (or one study: budget, normpix)")
    study = next((name for name in args.only or [] if name in studies), None)
    if study and len(args.only) > 1:
        parser.error(f"--only {study} runs a study of its own: give it alone")
    chosen = [v for a in (args.only or known) if a in known for v in known[a]]
    for value in args.values or []:
        if value not in chosen:
            parser.error(f"no setting {value!r} in {', '.join(args.only or known)}; its values are {', '.join(chosen)}")
    args.seeds = args.seeds or list(sweep.seeds)
    out = Path(args.out)
    if args.figures_only:
        if study == "budget":
            write_budget_report(out / f"budget_{sweep.tag}.csv", sweep, args.seeds[0], args.budget_margin)
        elif study == "normpix":
            rows = read_rows(out / f"normpix_{sweep.tag}.csv")
            (out / f"normpix_{sweep.tag}.md").write_text(report.normpix_report(rows))
        else:
            write_sweep_report(Path(args.csv) if args.csv else out / sweep.csv, sweep)
        return
    args.test_images = args.test_images if args.test_images is not None else sweep.test_images
    with command_line_errors():
        check_out_path(out)
        out.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(out)  # one sweep at a time: two would write the same CSVs and runs
        try:
            args.train = load_dataset(args.dataset, args.data_root, "train").subset(args.train_images)
            args.test = load_dataset(args.dataset, args.data_root, "test").subset(args.test_images)
            start = time.perf_counter()
            path = {"budget": run_budget, "normpix": run_normpix, None: run_sweep}[study](args, sweep)
        finally:
            release_lock(lock)
    if not args.plan_only:
        log(f"wrote {path} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
