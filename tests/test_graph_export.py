"""The exact graph of models fx cannot trace (HuggingFace's), read with torch.export."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.methods.graph import (
    GraphHyperNetwork,
    LowRankDecoder,
    TiledDecoder,
    export_graph,
    graph_of,
    module_chain_graph,
    write_params,
)
from hyperdnn.methods.graph.samplers import CharGPTArch, MnistArch

transformers = pytest.importorskip("transformers")  # the [lora] extra is part of [test]

SMALL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 50, "n_positions": 16}


def gpt2(device: str = "cpu") -> nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**SMALL))


def ids(device: str = "cpu") -> tuple[torch.Tensor]:
    return (torch.randint(SMALL["vocab_size"], (1, 8), generator=torch.Generator().manual_seed(0)).to(device),)


NO_CACHE = {"use_cache": False}


def test_gpt2_is_read_with_export_when_fx_cannot_trace_it():
    m = gpt2()
    with pytest.raises(ConfigError, match="torch.fx cannot trace .*example_inputs="):
        graph_of(m)  # no example inputs: the error says how to get the exact graph
    g = graph_of(m, example_inputs=ids(), example_kwargs=NO_CACHE)
    assert not g.approximate
    # Every parameter exactly once, by the names named_parameters() gives (the tied LM head is the embedding).
    owned = g.param_names()
    assert sorted(owned) == sorted(n for n, _ in m.named_parameters())
    assert len(owned) == len(set(owned))
    shapes = {n: s for node in g.nodes for n, s in node.params}
    assert all(shapes[n] == tuple(p.shape) for n, p in m.named_parameters())
    # Parameterised modules are one node each, with their kind.
    by_module = {n.module: n for n in g.nodes if n.module is not None}
    assert by_module["transformer.h.0.attn.c_attn"].kind == "linear"
    assert by_module["transformer.h.0.attn.c_attn"].cls == "Conv1D"
    assert by_module["transformer.h.0.ln_1"].kind == "layer_norm"
    assert by_module["transformer.wte"].kind == "embedding"
    assert by_module["transformer.h.1.mlp.act"].kind == "gelu"
    assert by_module["lm_head"].params == ()  # tied to transformer.wte.weight, owned there


def test_leaf_modules_given_as_an_iterator_reach_the_export_path():
    mlp = transformers.models.gpt2.modeling_gpt2.GPT2MLP
    as_tuple = graph_of(gpt2(), leaf_modules=(mlp,), example_inputs=ids(), example_kwargs=NO_CACHE)
    assert {n.module for n in as_tuple.nodes if n.cls == "GPT2MLP"} == {"transformer.h.0.mlp", "transformer.h.1.mlp"}
    assert graph_of(gpt2(), leaf_modules=iter([mlp]), example_inputs=ids(), example_kwargs=NO_CACHE) == as_tuple


def test_gpt2_block_residual_adds_against_a_hand_written_expectation():
    g = graph_of(gpt2(), example_inputs=ids(), example_kwargs=NO_CACHE)
    mod = {n.module: i for i, n in enumerate(g.nodes) if n.module is not None}
    succ = {i: set(g.successors(i)) for i in range(len(g.nodes))}
    pred = {i: {s for s, d in g.edges if d == i} for i in range(len(g.nodes))}
    x0 = mod["transformer.drop"]  # the block's input
    # GPT2Block: h = x + resid_dropout(c_proj(attn(ln_1(x)))); out = h + dropout(c_proj(act(c_fc(ln_2(h)))))
    attn_out, mlp_out = mod["transformer.h.0.attn.resid_dropout"], mod["transformer.h.0.mlp.dropout"]
    (add1,) = succ[attn_out]
    assert g.nodes[add1].kind == "add" and pred[add1] == {x0, attn_out}
    assert succ[x0] == {mod["transformer.h.0.ln_1"], add1}
    (add2,) = succ[mlp_out]
    assert g.nodes[add2].kind == "add" and pred[add2] == {add1, mlp_out}
    assert succ[add1] == {mod["transformer.h.0.ln_2"], add2}
    assert succ[add2] == {mod["transformer.h.1.ln_1"], next(i for i in succ[add2] if g.nodes[i].kind == "add")}
    # The MLP is a chain of its modules; the attention reads c_attn through a split into q, k, v.
    chain = ["transformer.h.0.ln_2", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.act",
             "transformer.h.0.mlp.c_proj", "transformer.h.0.mlp.dropout"]
    assert all(succ[mod[a]] == {mod[b]} for a, b in itertools.pairwise(chain))
    (split,) = succ[mod["transformer.h.0.attn.c_attn"]]
    assert g.nodes[split].kind == "select" and len(succ[split]) == 3
    sdpa = [i for i, n in enumerate(g.nodes) if n.kind == "attention"]
    assert len(sdpa) == 2  # one scaled_dot_product_attention per block
    # Position ids and the causal mask are built from shapes alone: no node of the graph.
    assert pred[mod["transformer.wpe"]] == set()
    assert {g.nodes[i].kind for i in pred[sdpa[0]]} == {"reshape"}


def test_the_export_graph_of_fx_traceable_models_is_the_fx_graph():
    for model, x in [(CharGPTArch(2, 32, 2, 20, 16).build(), torch.randint(20, (2, 16))),
                     (MnistArch("resnet", 2, 16, 3, "bn").build(), torch.randn(2, 1, 28, 28)),
                     (MnistArch("mlp", 3, 16, norm="ln", skip=True).build(), torch.randn(2, 1, 28, 28))]:
        a, b = graph_of(model), export_graph(model, (x,))
        assert [(n.kind, n.module, n.params, n.cls) for n in a.nodes] == [(n.kind, n.module, n.params, n.cls) for n in b.nodes]
        assert a.edges == b.edges
        # With example inputs graph_of still reads what fx can trace with fx.
        assert graph_of(model, example_inputs=(x,)) == a


def test_a_module_called_twice_is_two_nodes_the_first_owning_its_parameters():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    g = export_graph(Twice(), (torch.randn(2, 4),))
    assert g.kinds == ["input", "linear", "relu", "linear", "output"]
    assert [len(n.params) for n in g.nodes] == [0, 2, 0, 0, 0]
    assert g.edges == ((0, 1), (1, 2), (2, 3), (3, 4))


def test_a_child_called_model_and_tied_parameters_read_outside_modules_match_fx():
    class Named(nn.Module):  # a child whose name is the name export_graph wraps the model under
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(self.model(x))

    class TiedHead(nn.Module):  # a hand-written tied LM head: the embedding's tensor read by F.linear
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head_w = self.emb.weight

        def forward(self, x):
            return nn.functional.linear(self.emb(x), self.head_w)

    for model, x in [(Named(), torch.randn(2, 4)), (TiedHead(), torch.randint(10, (2, 3)))]:
        a, b = graph_of(model), export_graph(model, (x,))
        assert [(n.kind, n.module, n.params) for n in a.nodes] == [(n.kind, n.module, n.params) for n in b.nodes]
        assert a.edges == b.edges
    named = export_graph(Named(), (torch.randn(2, 4),))
    assert named.kinds == ["input", "linear", "relu", "output"]
    assert named.nodes[1].params == (("model.weight", (4, 4)), ("model.bias", (4,)))
    tied = export_graph(TiedHead(), (torch.randint(10, (2, 3)),))
    assert sum(len(n.params) for n in tied.nodes) == 1  # the one tensor, owned once


def test_the_cache_output_is_left_out_and_the_meta_device_works():
    ref = graph_of(gpt2(), example_inputs=ids(), example_kwargs=NO_CACHE)
    meta = graph_of(gpt2("meta"), example_inputs=ids("meta"), example_kwargs=NO_CACHE)
    assert meta == ref
    cached = graph_of(gpt2(), example_inputs=ids())  # returns a DynamicCache too
    assert sorted(cached.param_names()) == sorted(ref.param_names())
    assert cached.kinds.count("cat") == 4  # the cache's key/value updates are ops of this call


@pytest.mark.parametrize("decoder", [LowRankDecoder(16, rank=4, block=8), TiledDecoder(16, block=(8, 8, 1, 1))])
def test_ghn_predicts_a_gpt2_it_can_load_and_run(decoder):
    m = gpt2().eval()
    g = graph_of(m, example_inputs=ids(), example_kwargs=NO_CACHE)
    ghn = GraphHyperNetwork(decoder, dim=16, s_max=3)
    with torch.no_grad():
        theta = ghn(m, g)
    assert set(theta) == {n for n, _ in m.named_parameters()}
    assert all(tuple(theta[n].shape) == tuple(p.shape) for n, p in m.named_parameters())
    write_params(m, theta)
    with torch.no_grad():
        logits = m(*ids(), use_cache=False).logits
    assert logits.shape == (1, 8, SMALL["vocab_size"]) and torch.isfinite(logits).all()
    # The chain graph stays the explicit opt-in, with fewer nodes and no residual edges.
    assert module_chain_graph(m).approximate and len(module_chain_graph(m).nodes) < len(g.nodes)


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x)
        if y.sum() > 0:  # control flow on a value: neither fx nor export can read it
            return y
        return -y


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.body = _DataDependent()

    def forward(self, x):
        return self.body(self.pre(x))


def test_a_model_neither_fx_nor_export_can_read_gets_the_library_error():
    with pytest.raises(ConfigError) as info:
        graph_of(_Net(), example_inputs=(torch.randn(2, 4),))
    msg = str(info.value)
    assert "torch.fx cannot trace module 'body' (_DataDependent)" in msg
    assert "torch.export cannot export module 'body' (_DataDependent)" in msg
    assert "if y.sum() > 0" in msg  # the line of the failing op
    assert "leaf_modules=" in msg and "module_chain_graph" in msg
    # The fix the message names works: the module kept as one node.
    g = graph_of(_Net(), leaf_modules=(_DataDependent,))
    assert g.kinds == ["input", "linear", "other", "output"]


def test_export_graph_misuse():
    with pytest.raises(HDTypeError, match="example_inputs must be a tuple"):
        export_graph(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(HDTypeError, match="must be a torch.nn.Module"):
        export_graph(lambda x: x, (torch.randn(1, 2),))

    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ConfigError, match=r"parameters \['unused.weight', 'unused.bias'\] .* used by no node"):
        export_graph(Unused(), (torch.randn(1, 2),))
