"""A PyTorch MLP on scikit-learn's bundled digits, written to the WMLA HPO training contract.

`plain_train.py` is this script before it was made tunable; `diff -u plain_train.py train.py`
shows the changes (docs/guide.md walks through them):
- reads hyperparameters from ./config.json (or --config PATH; defaults when it is absent, so it
  also runs alone); `epochs` there (Hyperband's budget, or a scheduler's resource) wins over --epochs;
- reads its data from $DATA_DIR, writes its model to $RESULT_DIR and its history to $LOG_DIR;
- after every epoch rewrites $RESULT_DIR/val_dict_list.json, a list of {"steps", "loss",
  "accuracy"}: the service streams new points as they appear, so ASHA or the median rule can stop a
  poor trial early, and the final file is the WMLA result;
- in a trial, saves its state to $CHECKPOINT_DIR after every epoch and resumes from it: a Hyperband
  rung that continues a configuration trains only the epochs the previous rung did not;
- logs to stdout (the service stores it as the trial's outlog).
Run it directly: `python train.py --epochs 5`, or `python train.py --config best.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

torch.set_num_threads(1)  # trials share the machine's cores


def load_config(path: str) -> dict:
    """The trial's hyperparameters: the service writes config.json in the working directory."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def load_data(data_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays x (n, 64) and y (n,) from an .npz file when there is one, else the bundled digits."""
    if data_file.exists():
        arrays = np.load(data_file)
        return arrays["x"], arrays["y"]
    return load_digits(return_X_y=True)


def data(data_file: Path, seed: int) -> tuple[torch.Tensor, ...]:
    x, y = load_data(data_file)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.33, stratify=y, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std < 1e-3] = 1.0  # constant pixels stay 0 instead of exploding
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return as_x(x_train), torch.tensor(y_train), as_x(x_test), torch.tensor(y_test)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="config.json", help="hyperparameters (JSON)")
    args, _ = parser.parse_known_args()

    hp = load_config(args.config)
    lr = float(hp.get("learning_rate", 0.01))
    batch_size = int(hp.get("batch_size", 64))
    hidden = int(hp.get("hidden_size", 64))
    opt_name = str(hp.get("optimizer", "adam"))
    epochs = int(hp.get("epochs", args.epochs))
    data_file = Path(os.environ.get("DATA_DIR", "data")) / "digits.npz"  # DLI_DATA_FS[/data_path]
    result_dir = Path(os.environ.get("RESULT_DIR", "."))  # this trial's own folder
    log_dir = Path(os.environ.get("LOG_DIR", "."))  # RESULT_DIR/log, next to its stdout and stderr
    print(
        f"config: lr={lr} batch_size={batch_size} hidden={hidden} optimizer={opt_name} epochs={epochs}",
        flush=True,
    )

    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = data(data_file, args.seed)
    model = nn.Sequential(nn.Linear(x_train.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
    optimizer = optimizers[opt_name](model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    points: list[dict] = []
    checkpoint_dir = os.environ.get("CHECKPOINT_DIR")  # set in trials; Hyperband's rungs share it
    checkpoint = Path(checkpoint_dir) / "digits.pt" if checkpoint_dir else None
    if checkpoint and checkpoint.exists():  # an earlier rung of this configuration: continue there
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        points = state["points"]
        print(f"resumed after epoch {len(points)} from {checkpoint}", flush=True)

    for epoch in range(len(points) + 1, epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_test)
            loss = float(loss_fn(logits, y_test))
            accuracy = float((logits.argmax(1) == y_test).float().mean())
        loss = loss if np.isfinite(loss) else float("nan")
        points.append({"steps": epoch, "loss": loss, "accuracy": accuracy})
        took = time.perf_counter() - start
        print(f"epoch {epoch}: loss={loss:.4f} accuracy={accuracy:.4f} ({took:.2f}s)", flush=True)
        with (log_dir / "history.jsonl").open("a") as fh:
            fh.write(json.dumps({**points[-1], "seconds": round(took, 3)}) + "\n")
        (result_dir / "val_dict_list.json").write_text(json.dumps(points))  # every epoch: early stopping
        if checkpoint:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "points": points}
            torch.save(state, checkpoint)

    torch.save(model.state_dict(), result_dir / "model.pt")
    (result_dir / "val_dict_list.json").write_text(json.dumps(points))  # the WMLA result


if __name__ == "__main__":
    main()
