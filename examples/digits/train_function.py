"""The digits MLP as a function trial (`model: {main: train_function.py, function: train}`).

With `mode: function` the worker imports this module once per slot and calls `train(config)` for
every trial of the experiment: torch, scikit-learn and the data are loaded by the first trial only
(docs/trial-modes.md). It returns one {"steps", "loss", "accuracy"} point per epoch, which the
worker writes to val_dict_list.json; nothing else of the WMLA contract is needed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn
from train import data  # the script version's data loading, from the same folder

torch.set_num_threads(1)  # trials share the machine's cores


@functools.cache
def _data(path: str, seed: int) -> tuple[torch.Tensor, ...]:
    return data(Path(path), seed)  # once per process: later trials reuse it


def train(config: dict) -> list[dict]:
    lr = float(config.get("learning_rate", 0.01))
    batch_size = int(config.get("batch_size", 64))
    hidden = int(config.get("hidden_size", 64))
    epochs = int(config.get("epochs", 5))
    data_file = os.path.join(os.environ.get("DATA_DIR", "data"), "digits.npz")  # DLI_DATA_FS[/data_path]
    x_train, y_train, x_test, y_test = _data(data_file, 0)
    torch.manual_seed(0)  # the process is reused: seed per trial, not per process
    model = nn.Sequential(nn.Linear(x_train.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
    optimizer = optimizers[str(config.get("optimizer", "adam"))](model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    points = []
    for epoch in range(1, epochs + 1):
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
            points.append({"steps": epoch, "loss": float(loss_fn(logits, y_test)),
                           "accuracy": float((logits.argmax(1) == y_test).float().mean())})  # fmt: skip
        print(f"epoch {epoch}: {points[-1]}", flush=True)
    return points
