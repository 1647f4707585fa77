"""The digits MLP with DistributedDataParallel: one process per GPU, or per CPU slot without GPUs.

The worker starts a trial that asks for N > 1 GPUs as
`python -m torch.distributed.run --standalone --nproc-per-node=N train.py <args>` with
CUDA_VISIBLE_DEVICES naming its N GPUs; torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE.

- backend: NCCL with rank r on `cuda:LOCAL_RANK` when CUDA sees at least LOCAL_WORLD_SIZE GPUs,
  else gloo on the CPU (a CPU machine, or CUDA_VISIBLE_DEVICES naming GPUs that do not exist);
- `python train.py` without torchrun runs as a world of one (a single-process group on a file store);
- each rank trains on its DistributedSampler shard of every epoch; `batch_size` in config.json is the
  global batch, split across the ranks, so it means what it means in examples/digits;
- validation is sharded too and the sums all-reduced, so every rank knows the same loss and accuracy;
- only rank 0 writes: $RESULT_DIR/val_dict_list.json after every epoch, $RESULT_DIR/ddp.json
  (world size, backend, each rank's device, CUDA_VISIBLE_DEVICES) and the checkpoint that a later
  Hyperband rung resumes from ($CHECKPOINT_DIR/digits_ddp.pt).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

torch.set_num_threads(1)  # trials share the machine's cores; one thread per rank


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


def choose_device(local_rank: int, local_world_size: int) -> tuple[str, torch.device]:
    """("nccl", cuda:LOCAL_RANK) when every local rank has its own GPU, else ("gloo", cpu).

    Every rank on the machine sees the same CUDA_VISIBLE_DEVICES, so all ranks choose alike.
    """
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world_size:
        return "nccl", torch.device("cuda", local_rank)
    if torch.cuda.is_available() and local_rank == 0:
        print(
            f"{torch.cuda.device_count()} GPU(s) for {local_world_size} processes: gloo on the CPU",
            flush=True,
        )
    return "gloo", torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args, _ = parser.parse_known_args()  # other launcher-passed flags (e.g. IBM data paths) are ignored

    launched = "WORLD_SIZE" in os.environ  # torchrun (or another env:// launcher) started us
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    backend, device = choose_device(local_rank, local_world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives and all_gather_object use the current device

    with tempfile.TemporaryDirectory(prefix="digits-ddp-") as store_dir:
        init: dict = {"backend": backend, "timeout": timedelta(minutes=5)}
        if device.type == "cuda":
            init["device_id"] = device
        if launched:
            dist.init_process_group(init_method="env://", **init)
        else:  # plain `python train.py`: a world of one, no rendezvous port needed
            store = dist.FileStore(str(Path(store_dir) / "store"), 1)
            dist.init_process_group(store=store, rank=0, world_size=1, **init)
        try:
            train(args, rank, world_size, backend, device)
        finally:
            dist.destroy_process_group()


def train(args: argparse.Namespace, rank: int, world_size: int, backend: str, device: torch.device) -> None:
    hp = load_config()
    lr = float(hp.get("learning_rate", 0.01))
    batch_size = int(hp.get("batch_size", 64))
    hidden = int(hp.get("hidden_size", 64))
    opt_name = str(hp.get("optimizer", "adam"))
    epochs = int(hp.get("epochs", args.epochs))
    result_dir = Path(os.environ.get("RESULT_DIR", "."))
    checkpoint = Path(os.environ.get("CHECKPOINT_DIR", result_dir)) / "digits_ddp.pt"
    per_rank_batch = max(1, batch_size // world_size)
    leader = rank == 0

    devices: list = [None] * world_size
    dist.all_gather_object(devices, str(device))
    if leader:
        print(
            f"config: lr={lr} batch_size={batch_size} ({per_rank_batch} per rank) hidden={hidden} "
            f"optimizer={opt_name} epochs={epochs}; world_size={world_size} backend={backend} "
            f"devices={devices}",
            flush=True,
        )
        result_dir.mkdir(parents=True, exist_ok=True)
        ddp = {
            "world_size": world_size,
            "backend": backend,
            "devices": devices,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        (result_dir / "ddp.json").write_text(json.dumps(ddp, indent=1))

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    x_train, y_train, x_test, y_test = (t.to(device) for t in data(args.seed))
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).to(device)
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
    optimizer = optimizers[opt_name](model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()

    points: list[dict] = []
    if checkpoint.exists():  # an earlier rung of this configuration: every rank continues from it
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        points = state["points"]
        if leader:
            print(f"resumed after epoch {len(points)} from {checkpoint}", flush=True)

    ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # Equal shards (padded by repeating a few samples), so every rank runs the same number of steps.
    sampler = DistributedSampler(range(len(x_train)), num_replicas=world_size, rank=rank, seed=args.seed)
    x_val, y_val = x_test[rank::world_size], y_test[rank::world_size]  # disjoint validation shards

    for epoch in range(len(points) + 1, epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        order = torch.tensor(list(sampler), device=device)
        ddp_model.train()
        for i in range(0, len(order), per_rank_batch):
            idx = order[i : i + per_rank_batch]
            optimizer.zero_grad()
            loss_fn(ddp_model(x_train[idx]), y_train[idx]).backward()  # gradients all-reduced here
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            sums = torch.stack(
                [
                    nn.functional.cross_entropy(logits, y_val, reduction="sum"),
                    (logits.argmax(1) == y_val).sum().float(),
                    torch.tensor(float(len(y_val)), device=device),
                ]
            )
        dist.all_reduce(sums)
        loss_sum, correct, count = sums.tolist()
        loss, accuracy = loss_sum / count, correct / count
        loss = loss if math.isfinite(loss) else float("nan")
        points.append({"steps": epoch, "loss": loss, "accuracy": accuracy})
        if leader:
            took = time.perf_counter() - start
            print(f"epoch {epoch}: loss={loss:.4f} accuracy={accuracy:.4f} ({took:.2f}s)", flush=True)
            (result_dir / "val_dict_list.json").write_text(json.dumps(points))
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "points": points},
                checkpoint,
            )

    if leader:
        (result_dir / "val_dict_list.json").write_text(json.dumps(points))
    dist.barrier()  # nobody tears the group down while another rank still needs it


if __name__ == "__main__":
    main()
