"""The workloads written with hyperdnn's public API, as a user would."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .spec import Workload
from .subject import Subject, Unavailable


def _api():
    try:
        import hyperdnn as hd

        if hasattr(hd, "HyperDNN"):
            return hd
        from types import SimpleNamespace

        from hyperdnn.bodies import MLP
        from hyperdnn.conditioning import DataEncoder, TaskEmbedding
        from hyperdnn.hyperdnn import HyperDNN
        from hyperdnn.outputs.chunk_wise import ChunkWise
        from hyperdnn.outputs.generate_once import GenerateOnce
        from hyperdnn.outputs.low_rank import LowRank

        return SimpleNamespace(
            HyperDNN=HyperDNN, MLP=MLP, DataEncoder=DataEncoder, TaskEmbedding=TaskEmbedding,
            ChunkWise=ChunkWise, GenerateOnce=GenerateOnce, LowRank=LowRank,
        )
    except ImportError as exc:
        raise Unavailable("missing", f"hyperdnn not importable ({exc})") from None


def build(wl: Workload) -> Subject:
    hd = _api()
    t, h = wl.target, wl.hyper
    body = hd.MLP(hidden=h.body, activation="relu")
    outputs = {
        "static_full": lambda: hd.GenerateOnce(),
        "static_chunked": lambda: hd.ChunkWise(chunk_size=h.chunk_size, chunk_dim=h.chunk_dim),
        "dynamic_full": lambda: hd.GenerateOnce(),
        "dynamic_lowrank": lambda: hd.LowRank(rank=h.rank, on_small="full"),
    }[wl.key]()
    if wl.dynamic:
        inputs = hd.DataEncoder(nn.Linear(t.in_dim, h.cond_dim), dim=h.cond_dim)
    else:
        inputs = hd.TaskEmbedding(num_tasks=h.num_tasks, dim=h.task_dim)
    model = hd.HyperDNN(t.module(), inputs=inputs, outputs=outputs, body=body)
    if wl.dynamic:
        loop = lambda x: torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])  # noqa: E731
        return Subject("hyperdnn", model, model, loop)
    task = h.task
    return Subject("hyperdnn", model, lambda x: model(x, task=task))
