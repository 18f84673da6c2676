"""The graph hypernetwork: graph of a model in, all its parameters out (GHN-2, LoGAH).

    h_v^0 = Emb(kind_v) + ShapeEnc(shape of v's first parameter)
    h     = LayerNorm(GatedGNN(h^0))                       forward + backward sweeps
    e_p   = h_v + ShapeEnc_p(shape_p) + Role(p)            for each parameter p of node v
    theta_p = fan_in_normalize(Decoder(e_p, shape_p))      fan-in normalisation (GHN-2), or
    theta_p = std_normalize(Decoder(e_p, shape_p))         a fixed std for weights (LoGAH's GPT-2 code)

The shape encoder reads ``log2`` of the 4-d padded shape through a linear map (GHN-2
looks shapes up in a table of the sizes seen in training; a continuous code reaches
unseen widths without a nearest-size rule). Roles: matrix/conv weight, 1-d weight, bias.

The output follows the output contract: ``{name: Tensor | Factored}`` keyed by the
model's parameter names; the low-rank decoder's matrices stay factored (see
:mod:`hyperdnn.factored`). Knyazev et al. 2021 (GHN-2), Zhou et al. 2024 (LoGAH).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.factored import Factored

from .gnn import GatedGNN, Sweep, schedule
from .graph import NODE_KINDS, ModelGraph, graph_of
from .normalize import fan_in_normalize, std_normalize

_ROLES = ("weight", "vector", "bias")
WEIGHT_NORMS = ("fan_in", "std")


def _shape_features(shapes: Sequence[tuple[int, ...]], device: torch.device) -> Tensor:
    """``(n, 5)``: ``log2(1 + d)`` of each dimension of the shape padded to 4, and the number of dims."""
    rows = []
    for s in shapes:
        pad = list(s[:4]) + [0] * (4 - min(len(s), 4))
        rows.append([math.log2(1 + d) for d in pad] + [float(len(s))])
    return torch.tensor(rows, device=device).view(len(shapes), 5) / 4.0


class GraphHyperNetwork(nn.Module):
    """Predicts every parameter of a model from its computational graph.

    Args:
        decoder: a :class:`~hyperdnn.methods.graph.TiledDecoder` (GHN-2) or
            :class:`~hyperdnn.methods.graph.LowRankDecoder` (LoGAH) built with ``dim``.
        dim: node embedding width ``C`` (GHN-2: 32; LoGAH: up to 256).
        s_max: largest shortest-path distance of a virtual edge (GHN-2: 50; 1: none).
        steps: forward+backward sweeps of the gated GNN.
        layernorm: LayerNorm of the node embeddings after the GNN (GHN-2: yes).
        weight_norm: how predicted weights of 2+ dimensions are scaled: ``"fan_in"``
            (GHN-2's ``sqrt(beta / fan_in)``, :func:`fan_in_normalize`) or ``"std"``
            (LoGAH's GPT-2 code: every weight rescaled to the standard deviation
            ``init_std``, embeddings left raw, :func:`std_normalize`). Vectors are
            normalised as GHN-2 does in both.
        init_std: the standard deviation of ``weight_norm="std"`` (LoGAH: GPT-2's
            ``initializer_range``, 0.02).

    Call: ``ghn(model)`` -> ``{name: Tensor | Factored}``; ``ghn([m1, m2])`` -> a list of
    those, the graphs batched into one GNN pass (GHN-2's meta-batch).

    Example:
        >>> ghn = GraphHyperNetwork(LowRankDecoder(32, rank=4), dim=32)
        >>> theta = ghn(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
        >>> theta["0.weight"].shape                  # a Factored value, (16, 8) when formed
        (16, 8)
    """

    def __init__(self, decoder: nn.Module, *, dim: int = 32, s_max: int = 50, steps: int = 1,
                 layernorm: bool = True, weight_norm: str = "fan_in", init_std: float = 0.02) -> None:
        super().__init__()
        if dim < 2 or s_max < 1 or steps < 1:
            raise ConfigError(f"GraphHyperNetwork: dim >= 2, s_max >= 1 and steps >= 1 are required "
                              f"(got dim={dim}, s_max={s_max}, steps={steps})")
        if weight_norm not in WEIGHT_NORMS or not init_std > 0:
            raise ConfigError(f"GraphHyperNetwork: weight_norm must be one of {WEIGHT_NORMS} and init_std > 0 "
                              f"(got {weight_norm!r}, {init_std})")
        self.dim, self.s_max = dim, s_max
        self.weight_norm, self.init_std = weight_norm, init_std
        self.embed = nn.Embedding(len(NODE_KINDS), dim)
        self.shape_enc = nn.Linear(5, dim)
        self.param_shape_enc = nn.Linear(5, dim)
        self.role = nn.Embedding(len(_ROLES), dim)
        self.gnn = GatedGNN(dim, virtual_edges=s_max > 1, steps=steps)
        self.ln = nn.LayerNorm(dim) if layernorm else nn.Identity()
        self.decoder = decoder
        self._graphs: dict[tuple, tuple[ModelGraph, list[tuple[int, int, int]]]] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_graphs": {}}

    def graph(self, model: nn.Module) -> ModelGraph:
        """``model``'s graph (:func:`graph_of`), cached by class and parameter shapes."""
        return self._graph_and_edges(model)[0]

    def _graph_and_edges(self, model: nn.Module, graph: ModelGraph | None = None) -> tuple[ModelGraph, list]:
        if not isinstance(model, nn.Module):
            raise HDTypeError(f"GraphHyperNetwork: a model must be a torch.nn.Module (got {type(model).__name__})")
        key = (type(model).__qualname__, tuple((n, tuple(p.shape)) for n, p in model.named_parameters()),
               id(graph) if graph is not None else None)
        if key not in self._graphs:
            g = graph if graph is not None else graph_of(model)
            self._graphs[key] = (g, g.virtual_edges(self.s_max))
        return self._graphs[key]

    def embed_nodes(self, graphs: Sequence[ModelGraph], edges: Sequence[list]) -> Tensor:
        """Node embeddings after the GNN and the LayerNorm, ``(sum of nodes, C)`` (graphs concatenated)."""
        device = self.embed.weight.device
        kinds, shapes, has, batched, offset = [], [], [], [], 0
        for g, es in zip(graphs, edges):
            for node in g.nodes:
                kinds.append(NODE_KINDS.index(node.kind))
                shapes.append(node.params[0][1] if node.params else ())
                has.append(bool(node.params))
            batched.extend((u + offset, v + offset, s) for u, v, s in es)
            offset += len(g.nodes)
        h = self.embed(torch.tensor(kinds, device=device))  # (N, C)
        mask = torch.tensor(has, device=device, dtype=h.dtype).unsqueeze(1)
        h = h + mask * self.shape_enc(_shape_features(shapes, device).to(h.dtype))
        sweeps = self._sweeps(offset, batched)
        return self.ln(self.gnn(h, sweeps))

    def _sweeps(self, n: int, edges: list[tuple[int, int, int]]) -> tuple[Sweep, Sweep]:
        device = self.embed.weight.device
        fwd, bwd = schedule(n, edges)
        move = lambda sw: Sweep(tuple(tuple(t.to(device) for t in lv) for lv in sw.levels))  # noqa: E731
        return move(fwd), move(bwd)

    def forward(self, models: nn.Module | Sequence[nn.Module], graphs: ModelGraph | Sequence[ModelGraph] | None = None
                ) -> dict[str, Tensor | Factored] | list[dict[str, Tensor | Factored]]:
        """Predicted parameters of ``models``.

        Args:
            models: one module, or a sequence of modules (one batched GNN pass).
            graphs: their graphs when :func:`graph_of` cannot read them (e.g.
                :func:`~hyperdnn.methods.graph.module_chain_graph`), same structure as ``models``.

        Returns:
            ``{parameter name: Tensor | Factored}`` per model (a list for a sequence).
        """
        single = isinstance(models, nn.Module)
        mods = [models] if single else list(models)
        given = [graphs] if single and graphs is not None else (list(graphs) if graphs is not None else [None] * len(mods))
        if len(given) != len(mods):
            raise ConfigError(f"GraphHyperNetwork: {len(mods)} models but {len(given)} graphs")
        pairs = [self._graph_and_edges(m, g) for m, g in zip(mods, given)]
        h = self.embed_nodes([g for g, _ in pairs], [e for _, e in pairs])
        out, offset = [], 0
        for g, _ in pairs:
            out.append(self.decode(g, h[offset: offset + len(g.nodes)]))
            offset += len(g.nodes)
        return out[0] if single else out

    def decode(self, graph: ModelGraph, h: Tensor) -> dict[str, Tensor | Factored]:
        """The parameters of one graph from its node embeddings ``h`` ``(nodes, C)``."""
        names, shapes, node_of, roles = [], [], [], []
        for i, node in enumerate(graph.nodes):
            for name, shape in node.params:
                names.append(name)
                shapes.append(shape)
                node_of.append(i)
                roles.append(0 if len(shape) >= 2 else (2 if name.endswith("bias") else 1))
        if not names:
            return {}
        device = h.device
        e = h[torch.tensor(node_of, device=device)] + self.param_shape_enc(_shape_features(shapes, device).to(h.dtype))
        e = e + self.role(torch.tensor(roles, device=device))  # (P, C)
        out: dict[str, Tensor | Factored] = {}
        for j, (name, shape) in enumerate(zip(names, shapes)):
            node = graph.nodes[node_of[j]]
            relu_next = any(graph.nodes[s].kind == "relu" for s in graph.successors(node_of[j]))
            raw = self.decoder(e[j], tuple(shape))
            if self.weight_norm == "std" and len(shape) >= 2:
                # LoGAH leaves embeddings as predicted (GHN3_GPT._set_params skips nn.Embedding).
                out[name] = raw if node.kind == "embedding" else std_normalize(raw, self.init_std)
            else:
                out[name] = fan_in_normalize(raw, name, module_class=node.cls, beta=2.0 if relu_next else 1.0)
        return out
