"""A PyTorch MLP on scikit-learn's bundled digits, written to the WMLA HPO training contract.

- reads hyperparameters from ./config.json (defaults when it is absent, so it also runs alone);
- writes $RESULT_DIR/val_dict_list.json: one {"steps", "loss", "accuracy"} entry per epoch;
- logs to stdout (the service stores it as the trial's outlog).
Run it directly: `python train.py --epochs 5`.
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


def load_config() -> dict:
    path = Path("config.json")
    return json.loads(path.read_text()) if path.exists() else {}


def data(seed: int) -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.33, stratify=y, random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0)
    std[std < 1e-3] = 1.0  # constant pixels stay 0 instead of exploding
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    return as_x(x_train), torch.tensor(y_train), as_x(x_test), torch.tensor(y_test)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hp = load_config()
    lr = float(hp.get("learning_rate", 0.01))
    batch_size = int(hp.get("batch_size", 64))
    hidden = int(hp.get("hidden_size", 64))
    opt_name = str(hp.get("optimizer", "adam"))
    result_dir = Path(os.environ.get("RESULT_DIR", "."))
    print(f"config: lr={lr} batch_size={batch_size} hidden={hidden} optimizer={opt_name}", flush=True)

    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = data(args.seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
    optimizer = optimizers[opt_name](model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    points = []
    for epoch in range(1, args.epochs + 1):
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
        print(
            f"epoch {epoch}: loss={loss:.4f} accuracy={accuracy:.4f} ({time.perf_counter() - start:.2f}s)",
            flush=True,
        )

    (result_dir / "val_dict_list.json").write_text(json.dumps(points))


if __name__ == "__main__":
    main()
