"""hypnettorch 0.0.4: ``mnets.MLP(no_weights=True)`` driven by ``hnets.HMLP`` / ``hnets.ChunkedHMLP``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..spec import Workload
from ..subject import Subject, Unavailable
from . import import_peer


def build(wl: Workload) -> Subject:
    import_peer("hypnettorch")
    from hypnettorch.hnets import HMLP, ChunkedHMLP
    from hypnettorch.mnets import MLP

    t, h = wl.target, wl.hyper
    mnet = MLP(n_in=t.in_dim, n_out=t.out_dim, hidden_layers=(t.hidden,), no_weights=True, verbose=False)
    shapes = mnet.param_shapes
    if wl.key == "static_full":
        hnet = HMLP(shapes, uncond_in_size=0, cond_in_size=h.task_dim, layers=h.body, num_cond_embs=h.num_tasks, verbose=False)
    elif wl.key == "static_chunked":
        hnet = ChunkedHMLP(
            shapes, chunk_size=h.chunk_size, chunk_emb_size=h.chunk_dim, cond_in_size=h.task_dim,
            layers=h.body, num_cond_embs=h.num_tasks, verbose=False,
        )
    elif wl.key == "dynamic_full":
        return _dynamic(wl, mnet, HMLP(shapes, uncond_in_size=h.cond_dim, cond_in_size=0, layers=h.body, num_cond_embs=0, verbose=False))
    else:
        raise Unavailable("n/a", "hypnettorch has no low-rank output")
    module = nn.ModuleDict({"mnet": mnet, "hnet": hnet})
    task = h.task
    return Subject("hypnettorch", module, lambda x: mnet.forward(x, weights=hnet.forward(cond_id=task)))


def _dynamic(wl: Workload, mnet: nn.Module, hnet: nn.Module) -> Subject:
    """Per-sample weights: the hnet takes a batch of conditions; mnet runs one sample at a time."""
    encoder = nn.Linear(wl.target.in_dim, wl.hyper.cond_dim)
    module = nn.ModuleDict({"mnet": mnet, "hnet": hnet, "encoder": encoder})

    def forward(x: Tensor) -> Tensor:
        ws = hnet.forward(uncond_input=encoder(x), ret_format="sequential")
        return torch.cat([mnet.forward(x[i : i + 1], weights=w) for i, w in enumerate(ws)])

    def loop(x: Tensor) -> Tensor:
        return torch.cat([forward(x[i : i + 1]) for i in range(x.shape[0])])

    return Subject("hypnettorch", module, forward, loop, note="target looped over samples")


def build_vmap(wl: Workload) -> Subject:
    """Workload 2 the fast way a hypnettorch user can write: flattened weights, ``torch.func.vmap``
    over ``mnet.forward`` instead of a Python loop."""
    if wl.key != "dynamic_full":
        raise Unavailable("n/a", "only for per-sample weights")
    import_peer("hypnettorch")
    from hypnettorch.hnets import HMLP
    from hypnettorch.mnets import MLP

    t, h = wl.target, wl.hyper
    mnet = MLP(n_in=t.in_dim, n_out=t.out_dim, hidden_layers=(t.hidden,), no_weights=True, verbose=False)
    shapes = mnet.param_shapes
    hnet = HMLP(shapes, uncond_in_size=h.cond_dim, cond_in_size=0, layers=h.body, num_cond_embs=0, verbose=False)
    encoder = nn.Linear(t.in_dim, h.cond_dim)
    sizes = [int(torch.Size(s).numel()) for s in shapes]

    def one(xi: Tensor, *w: Tensor) -> Tensor:
        return mnet.forward(xi.unsqueeze(0), weights=list(w)).squeeze(0)

    def forward(x: Tensor) -> Tensor:
        flat = hnet.forward(uncond_input=encoder(x), ret_format="flattened")  # (B, P)
        ws = [p.view(x.shape[0], *s) for p, s in zip(torch.split(flat, sizes, dim=1), shapes)]
        return torch.func.vmap(one)(x, *ws)

    def loop(x: Tensor) -> Tensor:
        return torch.cat([forward(x[i : i + 1]) for i in range(x.shape[0])])

    module = nn.ModuleDict({"mnet": mnet, "hnet": hnet, "encoder": encoder})
    return Subject("hypnettorch+vmap", module, forward, loop, note="torch.func.vmap over mnet.forward")
