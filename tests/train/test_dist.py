"""DDP with 2 Gloo processes gives the weights of 1 process with the same global batch.

BatchNorm would differ (each rank normalises its half batch), so the test freezes it
(``model.freeze_bn=true``: running statistics, no update); on CUDA ``model.sync_bn=true`` is the
alternative. Everything else (sampler slices, gradient averaging, the loss denominator) must agree.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from facskit.train.dist import DistInfo, init_distributed
from facskit.train.loop import train
from tests.train.test_train import MemoryCache, tiny_config

OVERRIDES = ("model.freeze_bn=true", "train.max_steps=4", "train.epochs=5", "optim.lr=1e-3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    try:
        train(tiny_config(*OVERRIDES), run_dir, cache=MemoryCache(32, size=64), quiet=True)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def test_without_torchrun_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed(torch.device("cpu")) == DistInfo()
    assert not torch.distributed.is_initialized()


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(
            tiny_config(*OVERRIDES), tmp_path / "single", cache=MemoryCache(32, size=64), quiet=True
        )
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    a = torch.load(single.last_checkpoint, weights_only=True)
    b = torch.load(tmp_path / "ddp" / "last.ckpt", weights_only=True)
    assert a["extra"]["resume"]["global_step"] == b["extra"]["resume"]["global_step"] == 4
    assert list(b["state_dict"]) == list(a["state_dict"])  # saved unwrapped: no "module." prefix
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
