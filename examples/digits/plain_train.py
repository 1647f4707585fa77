"""A PyTorch MLP on scikit-learn's bundled digits, with fixed hyperparameters.

This is the script before it was made tunable: `train.py` is the same script changed to the WMLA
HPO contract, and `diff -u plain_train.py train.py` shows every change (docs/guide.md walks
through them). Run it: `python plain_train.py --epochs 5`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

torch.set_num_threads(1)  # trials share the machine's cores


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
    args, _ = parser.parse_known_args()

    lr, batch_size, hidden, opt_name, epochs = 0.01, 64, 64, "adam", args.epochs
    data_file = Path("data") / "digits.npz"  # your copy of the data (else the bundled digits)
    result_dir = Path(".")  # the trained model goes here
    log_dir = Path(".")  # the training history goes here
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
    for epoch in range(1, epochs + 1):
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

    torch.save(model.state_dict(), result_dir / "model.pt")


if __name__ == "__main__":
    main()
