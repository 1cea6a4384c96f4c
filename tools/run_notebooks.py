"""Run the course notebooks one at a time, keep their outputs, and record the minutes each took.

    python -m tools.run_notebooks --mode full            # execute in place, clean, write docs/minutes.json
    python -m tools.run_notebooks --mode quick --no-save # time quick mode only (outputs untouched)
    python -m tools.run_notebooks --mode full --only 05_loss 07_finetuning

Each notebook runs in a fresh kernel from the notebooks/ folder, as a learner runs it top to bottom.
Minutes are wall-clock from the first cell to the last (kernel start excluded). The machine (CPU,
cores, torch threads, load average before and after each notebook) is recorded beside the minutes,
so a reader can tell an idle-core measurement from a shared one. A full run's outputs are cleaned
(progress bars, stderr, warnings, absolute paths) with tools.notebooks.clean_notebook, and
its figures are stored as 256-colour PNGs (about half the bytes, no visible change for line plots
and image grids) so that each notebook stays under the 350 KB the repository allows.

    python -m tools.run_notebooks --shrink-only     # only re-store the committed figures
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the minutes were measured on."""
    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0], "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def shrink_png(data: str) -> str:
    """A base64 PNG as a 256-colour (adaptive palette) PNG, if that is smaller; else unchanged."""
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    if image.mode == "P":
        return data
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    smaller = base64.b64encode(buffer.getvalue()).decode("ascii")
    return smaller if len(smaller) < len(data) else data


def shrink_figures(path: Path) -> bool:
    """Store every PNG output of a notebook with ``shrink_png``; True if the file changed."""
    from tools.notebooks import read_notebook, write_notebook

    nb = read_notebook(path)
    changed = False
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if isinstance(data.get("image/png"), str):
                new = shrink_png(data["image/png"].replace("\n", ""))
                if new != data["image/png"]:
                    data["image/png"], changed = new, True
    if changed:
        write_notebook(path, nb)
    return changed


def run_one(path: Path, quick: bool, save: bool) -> dict:
    """Execute one notebook in a fresh kernel; returns its minutes and the load around it."""
    import nbformat
    from nbclient import NotebookClient

    env_backup = os.environ.get("MAE_LESSON_QUICK")
    if quick:
        os.environ["MAE_LESSON_QUICK"] = "1"
    else:
        os.environ.pop("MAE_LESSON_QUICK", None)
    try:
        nb = nbformat.read(path, as_version=4)
        load_before = os.getloadavg()[0]
        client = NotebookClient(nb, timeout=None, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}, record_timing=True)
        with client.setup_kernel():
            start = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            seconds = time.perf_counter() - start
        load_after = os.getloadavg()[0]
    finally:
        if env_backup is None:
            os.environ.pop("MAE_LESSON_QUICK", None)
        else:
            os.environ["MAE_LESSON_QUICK"] = env_backup
    if save:
        nbformat.write(nb, path)
        from tools.notebooks import clean_notebook

        clean_notebook(path)
        shrink_figures(path)
    return {"minutes": round(seconds / 60, 1), "load_before": round(load_before, 2), "load_after": round(load_after, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.run_notebooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["full", "quick"])
    parser.add_argument("--shrink-only", action="store_true", help="only store the committed figures as 256-colour PNGs")
    parser.add_argument("--only", nargs="+", metavar="STEM", help="notebook stems (default: all, in order)")
    parser.add_argument("--no-save", action="store_true", help="time only: leave the notebook files as they are")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.shrink_only:
        for path in paths:
            print(f"{path.name}: {'figures re-stored' if shrink_figures(path) else 'unchanged'}")
        return 0
    if args.mode is None:
        parser.error("give --mode full or --mode quick (or --shrink-only)")
    if args.only:
        unknown = set(args.only) - {p.stem for p in paths}
        if unknown:
            parser.error(f"no such notebook: {', '.join(sorted(unknown))}; choose from {', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if p.stem in args.only]
    from mae_lesson.doctor import MINUTES_FILE, measure_images_per_s

    record = json.loads(MINUTES_FILE.read_text()) if MINUTES_FILE.exists() else {"notebooks": {}}
    record.setdefault("notebooks", {})
    if not args.only:  # the speed the doctor scales these minutes by, taken with a whole set of them
        record["images_per_s_reference"] = round(measure_images_per_s(), 1)
        record["images_per_s_command"] = "mae_lesson.doctor.measure_images_per_s(), by tools/run_notebooks.py"
    for path in paths:
        result = run_one(path, quick=args.mode == "quick", save=not args.no_save)
        entry = record["notebooks"].setdefault(path.stem, {})
        entry[args.mode] = result["minutes"]
        entry[f"{args.mode}_load"] = [result["load_before"], result["load_after"]]
        print(f"{path.stem}: {result['minutes']} min ({args.mode} mode; load average {result['load_before']} "
              f"before, {result['load_after']} after)", flush=True)
        record["machine"] = machine()
        record[f"{args.mode}_measured_on"] = date.today().isoformat()
        MINUTES_FILE.write_text(json.dumps(record, indent=1) + "\n")  # after each notebook: a stop loses nothing
    return 0


if __name__ == "__main__":
    sys.exit(main())
