"""hyperlight 0.0.5: ``hypernetize`` the target and feed it ``HyperNet`` outputs via ``using_externals``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..spec import Workload
from ..subject import Subject, Unavailable
from . import import_peer


def build(wl: Workload) -> Subject:
    hl = import_peer("hyperlight")
    t, h = wl.target, wl.hyper
    if wl.key in ("static_chunked", "dynamic_lowrank"):
        raise Unavailable("n/a", f"hyperlight has no {'chunk-wise' if 'chunk' in wl.key else 'low-rank'} output")
    target = t.module()
    mainnet = hl.hypernetize(target, parameters=list(target.parameters()))
    shapes = mainnet.external_shapes()
    fc_kws = {"nonlinearity": "ReLU"}
    if wl.key == "static_full":
        emb = nn.Embedding(h.num_tasks, h.task_dim)
        hnet = hl.HyperNet(input_shapes={"z": (h.task_dim,)}, output_shapes=shapes, hidden_sizes=list(h.body), encoding=None, fc_kws=fc_kws)
        task = h.task

        def forward(x: Tensor) -> Tensor:
            with mainnet.using_externals(hnet(z=emb.weight[task])):
                return mainnet(x)

        return Subject("hyperlight", nn.ModuleDict({"emb": emb, "hnet": hnet, "main": mainnet}), forward)
    # dynamic: a batch of conditions gives a batch of weights, which the externals refuse
    encoder = nn.Linear(t.in_dim, h.cond_dim)
    hnet = hl.HyperNet(input_shapes={"z": (h.cond_dim,)}, output_shapes=shapes, hidden_sizes=list(h.body), encoding=None, fc_kws=fc_kws)

    def dyn_forward(x: Tensor) -> Tensor:
        with mainnet.using_externals(hnet(z=encoder(x))):
            return mainnet(x)

    def loop(x: Tensor) -> Tensor:
        return torch.cat([dyn_forward(x[i : i + 1]) for i in range(x.shape[0])])

    return Subject("hyperlight", nn.ModuleDict({"enc": encoder, "hnet": hnet, "main": mainnet}), dyn_forward, loop)
