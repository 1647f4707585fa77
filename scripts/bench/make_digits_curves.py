"""Generate the digits learning-curve table (reference/benchmarks.md §3.2) used by multifidelity.py.

Samples `--configs` configurations (fixed seed) from the 5-D space

    lr     10^U(-4, -0.5)   (log)          hidden  round(2^U(4, 8))   (int, log)
    alpha  10^U(-6, -1)     (log)          batch   round(2^U(4, 8))   (int, log)
    activation in {relu, tanh}

and trains each for `--epochs` epochs with sklearn `MLPClassifier.partial_fit` (Adam, one call =
one epoch) on `load_digits` (stratified 67/33 split, standardised on the training part), recording
the validation error after every epoch. Writes scripts/bench/data/digits_curves.json (configs as
dicts, curves rounded to 5 decimals) and prints the table's best / median final error and the
Spearman correlation of epochs 1 / 3 / 9 with the final epoch, next to the reference numbers.

    .venv/bin/python scripts/bench/make_digits_curves.py [--configs 240] [--epochs 27] [--jobs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "scripts" / "bench" / "data" / "digits_curves.json"

SPACE_TEXT = {
    "lr": "10^U(-4,-0.5) (log)",
    "hidden": "round(2^U(4,8)) (int, log)",
    "alpha": "10^U(-6,-1) (log)",
    "batch": "round(2^U(4,8)) (int, log)",
    "activation": "{relu, tanh}",
}
# reference/benchmarks.md §3.2 / §4.4 (240 configs x 27 epochs).
REFERENCE = {"best": 0.0152, "median": 0.0387, "rho": {1: 0.63, 3: 0.72, 9: 0.86}}

_DATA: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def sample_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """n configurations from the §3.2 space, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        out.append(
            {
                "lr": float(f"{10 ** rng.uniform(-4.0, -0.5):.6g}"),
                "hidden": round(float(2 ** rng.uniform(4.0, 8.0))),
                "alpha": float(f"{10 ** rng.uniform(-6.0, -1.0):.6g}"),
                "batch": round(float(2 ** rng.uniform(4.0, 8.0))),
                "activation": str(rng.choice(["relu", "tanh"])),
            }
        )
    return out


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, X_val, y_train, y_val): digits, stratified 67/33, standardised (cached per process)."""
    global _DATA
    if _DATA is None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        X, y = load_digits(return_X_y=True)
        X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.33, stratify=y, random_state=0)
        scaler = StandardScaler().fit(X_tr)
        _DATA = (scaler.transform(X_tr), scaler.transform(X_va), y_tr, y_va)
    return _DATA


def train_curve(task: tuple[int, dict[str, Any], int]) -> tuple[int, list[float], float]:
    """(index, validation error after each epoch, seconds) for one configuration."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    index, config, epochs = task
    X_tr, X_va, y_tr, y_va = _data()
    classes = np.unique(y_tr)
    model = MLPClassifier(
        hidden_layer_sizes=(int(config["hidden"]),),
        activation=str(config["activation"]),
        solver="adam",
        alpha=float(config["alpha"]),
        batch_size=int(config["batch"]),
        learning_rate_init=float(config["lr"]),
        random_state=index,
    )
    curve: list[float] = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow with very large learning rates
        for _ in range(epochs):
            model.partial_fit(X_tr, y_tr, classes=classes)
            curve.append(round(1.0 - float(model.score(X_va, y_va)), 5))
    return index, curve, time.perf_counter() - t0


def summary(curves: np.ndarray) -> dict[str, Any]:
    """Best / median / worst final error and Spearman(epoch e, final) for e = 1, 3, 9."""
    from scipy.stats import spearmanr

    final = curves[:, -1]
    rho = {e: float(spearmanr(curves[:, e - 1], final).statistic) for e in (1, 3, 9) if e <= curves.shape[1]}
    return {
        "best": float(final.min()),
        "median": float(np.median(final)),
        "worst": float(final.max()),
        "top5_threshold": float(np.quantile(final, 0.05)),
        "spearman": rho,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=240, help="configurations to sample (>= 240)")
    parser.add_argument("--epochs", type=int, default=27, help="epochs per configuration")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the configuration sample")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    configs = sample_configs(args.configs, args.seed)
    tasks = [(i, c, args.epochs) for i, c in enumerate(configs)]
    t0 = time.perf_counter()
    curves: list[list[float]] = [[] for _ in configs]
    seconds: list[float] = [0.0 for _ in configs]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(train_curve, tasks, chunksize=4))
    else:
        results = [train_curve(t) for t in tasks]
    for i, curve, sec in results:
        curves[i], seconds[i] = curve, sec
    wall = time.perf_counter() - t0

    arr = np.array(curves)
    stats = summary(arr)
    doc = {
        "description": (
            "Validation error of sklearn MLPClassifier (Adam, partial_fit = 1 epoch) on load_digits "
            "(stratified 67/33 split, random_state 0, standardised) after each epoch; "
            "reference/benchmarks.md §3.2. Generated by scripts/bench/make_digits_curves.py."
        ),
        "space": SPACE_TEXT,
        "seed": args.seed,
        "epochs": args.epochs,
        "generated": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "wall_s": round(wall, 1),
        "stats": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in stats.items()},
        "configs": configs,
        "curves": curves,
    }
    doc["stats"]["spearman"] = {str(k): round(v, 3) for k, v in stats["spearman"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")

    ref = REFERENCE
    print(f"{len(configs)} configs x {args.epochs} epochs, --jobs {args.jobs}: wall {wall:.0f} s")
    print(
        f"per config: mean {np.mean(seconds):.2f} s, {1000 * np.mean(seconds) / args.epochs:.0f} ms/epoch "
        "(one process)"
    )
    print(
        f"final val. error: best {stats['best']:.4f} (ref {ref['best']}), median {stats['median']:.4f} "
        f"(ref {ref['median']}), worst {stats['worst']:.4f}; top-5 % threshold {stats['top5_threshold']:.4f}"
    )
    rho_text = ", ".join(
        f"epoch {e}: {v:.2f} (ref {ref['rho'][e]})" for e, v in stats["spearman"].items() if e in ref["rho"]
    )
    print(f"Spearman with epoch {args.epochs}: {rho_text}")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    print(f"({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
