"""hyper-nn 0.2.2 (torch half): a ``TorchHyperNetwork`` whose ``generate_params`` returns a flat
parameter vector, run through the library's ``FunctionalParamVectorWrapper``.

hyper-nn's own hypernetworks are an embedding table plus one linear generator; the body MLP and
the task / chunk embeddings are written here in its documented extension point
(``generate_params``), as its ``TorchDynamicHyperNetwork`` does, including its ``.view(-1)``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ..spec import Workload, body_mlp
from ..subject import Subject, Unavailable
from . import import_peer


def build(wl: Workload) -> Subject:
    import_peer("hyper-nn")
    from hypernn.torch.hypernet import TorchHyperNetwork

    t, h = wl.target, wl.hyper
    if wl.key == "dynamic_lowrank":
        raise Unavailable("n/a", "hyper-nn has no low-rank output")

    class Generator(TorchHyperNetwork):
        def __init__(self) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                super().__init__(t.module())
            if wl.dynamic:
                self.encoder = nn.Linear(t.in_dim, h.cond_dim)
                self.body = body_mlp(h.cond_dim, h.body)
                self.head = nn.Linear(h.body[-1], t.n_params)
            else:
                self.emb = nn.Embedding(h.num_tasks, h.task_dim)
                chunked = wl.key == "static_chunked"
                self.chunk_emb = nn.Parameter(torch.randn(h.n_chunks(t.n_params), h.chunk_dim)) if chunked else None
                self.body = body_mlp(h.task_dim + (h.chunk_dim if chunked else 0), h.body)
                self.head = nn.Linear(h.body[-1], h.chunk_size if chunked else t.n_params)

        def generate_params(self, inp: Tensor | None = None):
            if wl.dynamic:
                return self.head(self.body(self.encoder(inp))).view(-1), {}
            e = self.emb.weight[h.task]
            if self.chunk_emb is not None:
                e = torch.cat([e.expand(self.chunk_emb.shape[0], -1), self.chunk_emb], dim=1)
            return self.head(self.body(e)).view(-1), {}

    gen = Generator()
    # functorch's make_functional keeps a stateless copy of the target; only the generator trains
    for p in gen.functional_target_network.parameters():
        p.requires_grad_(False)

    if wl.dynamic:
        forward = lambda x: gen(x, generate_params_kwargs={"inp": x})  # noqa: E731
        loop = lambda x: torch.cat([forward(x[i : i + 1]) for i in range(x.shape[0])])  # noqa: E731
        return Subject("hyper-nn", gen, forward, loop)
    return Subject("hyper-nn", gen, lambda x: gen(x))
