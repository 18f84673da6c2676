"""The graph of a model (hyperdnn.methods.graph.graph): standard blocks against hand-written graphs,
virtual edges against hand-computed shortest paths, the untraceable-module error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.methods.graph import GraphNode, ModelGraph, graph_of, module_chain_graph


def summary(g: ModelGraph) -> list[tuple[str, tuple[str, ...]]]:
    return [(n.kind, tuple(name for name, _ in n.params)) for n in g.nodes]


def test_linear_alone_is_one_node():
    g = graph_of(nn.Linear(2, 3))
    assert summary(g) == [("input", ()), ("linear", ("weight", "bias")), ("output", ())]
    assert g.edges == ((0, 1), (1, 2))
    assert g.nodes[1].params == (("weight", (3, 2)), ("bias", (3,)))
    assert g.nodes[1].cls == "Linear"


def test_conv_batchnorm_relu():
    g = graph_of(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)))
    assert summary(g) == [
        ("input", ()),
        ("conv", ("0.weight", "0.bias")),
        ("batch_norm", ("1.weight", "1.bias")),
        ("relu", ()),
        ("reshape", ()),
        ("linear", ("4.weight", "4.bias")),
        ("output", ()),
    ]
    assert g.edges == tuple((i, i + 1) for i in range(6))
    assert g.nodes[1].params[0] == ("0.weight", (4, 1, 3, 3))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + F.relu(self.fc(self.norm(x)))


def test_layernorm_and_residual_add():
    g = graph_of(Residual())
    assert summary(g) == [("input", ()), ("layer_norm", ("norm.weight", "norm.bias")), ("linear", ("fc.weight", "fc.bias")),
                          ("relu", ()), ("add", ()), ("output", ())]
    # x feeds the norm and the add (the skip connection); the add joins the two branches.
    assert g.edges == ((0, 1), (0, 4), (1, 2), (2, 3), (3, 4), (4, 5))


class TorchAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def test_multihead_attention_is_one_node_with_its_four_tensors():
    g = graph_of(TorchAttention())
    assert summary(g) == [
        ("input", ()),
        ("attention", ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias")),
        ("select", ()),
        ("output", ()),
    ]
    assert g.edges == ((0, 1), (1, 2), (2, 3))


class HandAttention(nn.Module):
    """GPT-2-style causal self-attention written with scaled_dot_product_attention."""

    def __init__(self, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


def test_hand_written_attention_without_the_shape_arithmetic():
    g = graph_of(HandAttention())
    assert summary(g) == [
        ("input", ()), ("linear", ("qkv.weight", "qkv.bias")), ("select", ()),            # split
        ("select", ()), ("select", ()), ("select", ()),                                     # q, k, v
        ("reshape", ()), ("reshape", ()), ("reshape", ()), ("reshape", ()), ("reshape", ()), ("reshape", ()),
        ("attention", ()), ("reshape", ()), ("reshape", ()), ("linear", ("proj.weight", "proj.bias")), ("output", ()),
    ]
    # x.shape, d // heads: no nodes; q, k, v each go view -> transpose into the attention node.
    assert g.edges == ((0, 1), (1, 2), (2, 3), (2, 4), (2, 5), (3, 6), (4, 8), (5, 10), (6, 7), (7, 12), (8, 9),
                       (9, 12), (10, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 16))


def test_virtual_edges_against_hand_computed_shortest_paths():
    #   0 -> 1 -> 2 -> 3 -> 4        and a skip 1 -> 3
    nodes = tuple(GraphNode(str(i), "other") for i in range(5))
    g = ModelGraph(nodes, ((0, 1), (1, 2), (2, 3), (3, 4), (1, 3)))
    assert g.virtual_edges(1) == [(0, 1, 1), (1, 2, 1), (1, 3, 1), (2, 3, 1), (3, 4, 1)]
    # By hand: 0->2 (2), 0->3 (2, through the skip), 0->4 (3), 1->4 (2), 2->4 (2).
    assert g.virtual_edges(2) == [(0, 1, 1), (0, 2, 2), (0, 3, 2), (1, 2, 1), (1, 3, 1), (1, 4, 2), (2, 3, 1),
                                  (2, 4, 2), (3, 4, 1)]
    assert g.virtual_edges(50) == sorted(g.virtual_edges(2) + [(0, 4, 3)])
    with pytest.raises(ConfigError, match="s_max must be >= 1"):
        g.virtual_edges(0)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return x
        return -x


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 2), Branchy())
        self.head = nn.Linear(2, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_untraceable_module_gets_the_library_error_naming_it():
    with pytest.raises(ConfigError, match=r"cannot trace module 'body\.1' \(Branchy\) of Outer.*leaf_modules="):
        graph_of(Outer())
    # The fix the message gives works: the module becomes one node.
    g = graph_of(Outer(), leaf_modules=(Branchy,))
    assert g.kinds == ["input", "linear", "other", "linear", "output"]
    with pytest.raises(HDTypeError, match="must be a torch.nn.Module"):
        graph_of("not a module")


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(2, 2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


def test_a_parameter_no_node_uses_is_an_error():
    with pytest.raises(ConfigError, match=r"\['unused.weight', 'unused.bias'\] of Unused are used by no node"):
        graph_of(Unused())


class WithTable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(4, 8))
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 10)

    def forward(self, idx):
        return self.fc(self.emb(idx) + self.pos)


def test_parameter_read_directly_is_a_param_node():
    g = graph_of(WithTable())
    assert summary(g) == [("input", ()), ("embedding", ("emb.weight",)),
                          ("param", ("pos",)), ("add", ()), ("linear", ("fc.weight", "fc.bias")), ("output", ())]


def test_module_chain_graph_on_the_meta_device():
    with torch.device("meta"):
        m = WithTable()
    g = module_chain_graph(m)
    assert g.approximate
    assert summary(g) == [("input", ()), ("param", ("pos",)), ("embedding", ("emb.weight",)),
                          ("linear", ("fc.weight", "fc.bias")), ("output", ())]
    assert g.edges == ((0, 1), (1, 2), (2, 3), (3, 4))


def test_a_hand_made_graph_must_be_topologically_numbered():
    nodes = tuple(GraphNode(str(i), "other") for i in range(3))
    with pytest.raises(ConfigError, match=r"lower to a higher node index .*\(got \[\(2, 1\)\]\)"):
        ModelGraph(nodes, ((0, 2), (2, 1)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(self.emb(idx))


def test_a_tied_tensor_is_owned_once_under_its_first_name():
    for g in (graph_of(Tied()), module_chain_graph(Tied())):
        assert [n for n in g.param_names()] == [n for n, _ in Tied().named_parameters()] == ["emb.weight"]
        assert [n.kind for n in g.nodes if n.params] == ["embedding"]
