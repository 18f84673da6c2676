"""Every misuse gets the library's own error naming the bad value and what was expected."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hyperdnn as hd


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_unknown_parameter_name_or_pattern() -> None:
    with pytest.raises(hd.ConfigError, match=r"generate='fc\*' matches no parameter"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate="fc*")
    with pytest.raises(hd.ConfigError, match="freeze='nope' matches no parameter"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate="0.*", freeze="nope")
    with pytest.raises(hd.ConfigError, match="Conv2d matches no parameter"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate=nn.Conv2d)
    with pytest.raises(hd.HDTypeError, match="generate must be"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate=3)


def test_no_parameter_selected_and_generated_frozen_overlap() -> None:
    with pytest.raises(hd.ConfigError, match="selects no parameter"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate=lambda n, p: False)
    with pytest.raises(hd.ConfigError, match="both generated and frozen"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), generate="0.*", freeze="0.weight")
    with pytest.raises(hd.HDTypeError, match="must be a torch.nn.Module"):
        hd.HyperDNN(lambda x: x, inputs=hd.TaskEmbedding(2, 4))


def test_task_id_out_of_range_and_wrong_type() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 4))
    x = torch.randn(2, 4)
    with pytest.raises(hd.ConfigError, match=r"task id 3 out of range; expected 0..2"):
        model(x, task=3)
    with pytest.raises(hd.ConfigError, match="task id -1 out of range"):
        model(x, task=torch.tensor([0, -1]))
    with pytest.raises(hd.ConfigError, match="needs task="):
        model(x)
    with pytest.raises(hd.HDTypeError, match="must hold integers"):
        model(x, task=torch.tensor(1.0))


def test_condition_of_the_wrong_size() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.External(5))
    with pytest.raises(hd.ShapeError, match=r"shape \(4,\); expected \(5,\) or \(B, 5\)"):
        model(torch.randn(2, 4), condition=torch.randn(4))
    enc = hd.HyperDNN(mlp(), inputs=hd.DataEncoder(nn.Linear(4, 7), dim=6))
    with pytest.raises(hd.ShapeError, match=r"encoder output has shape \(2, 7\); expected \(B, 6\)"):
        enc(torch.randn(2, 4))


def test_batched_condition_whose_batch_differs_from_x() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.External(5))
    with pytest.raises(hd.ShapeError, match="condition has a batch of 3 but x has 4 rows"):
        model(torch.randn(4, 4), condition=torch.randn(3, 5))
    task = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 4))
    with pytest.raises(hd.ShapeError, match="batch of 2 but x has 5 rows"):
        task(torch.randn(5, 4), task=torch.tensor([0, 1]))


def test_part_configs_are_validated_at_construction() -> None:
    with pytest.raises(hd.ConfigError, match=r"ChunkWise: chunk_size must be > 0 \(got 0\)"):
        hd.ChunkWise(chunk_size=0)
    with pytest.raises(hd.ConfigError, match="chunk_dim must be > 0"):
        hd.ChunkWise(chunk_size=4, chunk_dim=-1)
    with pytest.raises(hd.ConfigError, match="rank must be a positive int"):
        hd.LowRank(rank=0)
    with pytest.raises(hd.ConfigError, match="tile must be two positive ints"):
        hd.ComponentWise(tile=(16,))
    with pytest.raises(hd.ConfigError, match="num_tasks must be a positive int"):
        hd.TaskEmbedding(0, 4)
    with pytest.raises(hd.ConfigError, match="activation must be one of"):
        hd.MLP(activation="swish2")
    with pytest.raises(hd.ConfigError, match="heads .* must divide dim"):
        hd.Attention(dim=10, heads=3)
    with pytest.raises(hd.ConfigError, match="encoding must be None or 'cos-sin'"):
        hd.External(3, encoding="fourier")
    with pytest.raises(hd.ConfigError, match="samples must be a positive int"):
        hd.HyperDNN(mlp(), inputs=hd.Noise(3))(torch.randn(2, 4), samples=0)
    with pytest.raises(hd.HDTypeError, match="body must be a config"):
        hd.HyperDNN(mlp(), inputs=hd.Noise(3), body=nn.Linear(3, 3))


def test_rank_larger_than_the_matrix() -> None:
    with pytest.raises(hd.ConfigError, match=r"rank 5 is larger than the matrix '0.weight' of shape \(6, 4\) \(at most 4\)"):
        hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), outputs=hd.LowRank(rank=5))
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4), outputs=hd.LowRank(rank=5, on_small="full"))
    assert model.weights(task=0)["2.weight"].shape == (3, 6)


def test_low_rank_matrices_have_the_rank_asked_for() -> None:
    model = hd.HyperDNN(nn.Linear(20, 12), inputs=hd.TaskEmbedding(2, 4), outputs=hd.LowRank(rank=3))
    w = model.weights(task=1)["weight"]
    assert torch.linalg.matrix_rank(w.detach()).item() == 3


def test_non_finite_weights_are_detected_on_request() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.External(3), check_finite=True)
    x = torch.randn(2, 4)
    model(x, condition=torch.randn(3))
    with pytest.raises(hd.NonFiniteWeightsError, match="generated weight '0.weight' holds NaN"):
        model(x, condition=torch.tensor([math.nan, 0.0, 0.0]))
    with pytest.raises(hd.NonFiniteWeightsError, match="holds Inf"):
        hd.require_finite({"w": torch.tensor([1.0, math.inf])})


def test_run_target_checks_the_weights() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(2, 4))
    theta = model.weights(task=0)
    with pytest.raises(hd.ShapeError, match=r"missing \['2.bias'\]"):
        model.run_target(torch.randn(2, 4), {k: v for k, v in theta.items() if k != "2.bias"})
    bad = dict(theta, **{"0.weight": torch.zeros(6, 5)})
    with pytest.raises(hd.ShapeError, match=r"'0.weight' has shape \(6, 5\); expected \(6, 4\)"):
        model.run_target(torch.randn(2, 4), bad)
    mixed = dict(theta, **{"0.bias": torch.zeros(3, 6)})
    with pytest.raises(hd.ShapeError, match="has batch 3 but"):
        model.run_target(torch.randn(3, 4), mixed)


def test_batched_rules_refuse_unsupported_module_options() -> None:
    lstm = nn.LSTM(3, 4, proj_size=2, batch_first=True)
    model = hd.HyperDNN(lstm, inputs=hd.External(2))
    with pytest.raises(hd.ConfigError, match="proj_size"):
        model(torch.randn(2, 5, 3), condition=torch.randn(2, 2))
    emb = hd.HyperDNN(nn.Embedding(5, 3, max_norm=1.0), inputs=hd.External(2))
    with pytest.raises(hd.ConfigError, match="max_norm"):
        emb(torch.randint(0, 5, (2, 4)), condition=torch.randn(2, 2))


@pytest.mark.parametrize("kwargs,message", [
    (dict(outputs=hd.ChunkWise), r"HyperDNN: outputs=ChunkWise is the class, not a config; pass an instance such as hd.ChunkWise\(...\)"),
    (dict(body=hd.MLP), r"HyperDNN: body=MLP is the class, not a config; pass an instance such as hd.MLP\(...\)"),
    (dict(inputs=hd.TaskEmbedding), r"inputs=TaskEmbedding is the class, not a config"),
    (dict(inputs=nn.Linear(4, 3)), r"inputs must be a config such as hd.TaskEmbedding.* \(got Linear, a module: to condition on "
                                   r"the data through that module, use hd.DataEncoder\(module, dim\)\)"),
    (dict(body=nn.Linear(4, 3)), r"body must be a config such as hd.MLP\(hidden=\(100, 100\)\).* \(got Linear, a module: "
                                 r"a body is made from its config"),
    (dict(outputs=nn.Linear(4, 3)), r"outputs must be a config such as hd.GenerateOnce\(\).* \(got Linear, a module: an output "
                                    r"strategy is made from its config"),
    (dict(inputs=hd.MLP()), r"inputs must be a config such as hd.TaskEmbedding.* \(got MLP, a body config: pass it as body=\)"),
    (dict(inputs=hd.TaskEmbedding(2, 3), body=hd.ChunkWise()), r"\(got ChunkWise, an output-strategy config: pass it as outputs=\)"),
    (dict(inputs=hd.TaskEmbedding(2, 3), outputs="chunkwise"), r"outputs must be a config .* \(got 'chunkwise', a str\)"),
])
def test_misused_parts_get_an_error_naming_the_fix(kwargs, message) -> None:
    with pytest.raises(hd.HDTypeError, match=message):
        hd.HyperDNN(mlp(), **kwargs)


def test_mlp_hidden_must_be_a_tuple() -> None:
    with pytest.raises(hd.ConfigError, match=r"MLP: hidden must be a tuple of ints such as \(64,\)"):
        hd.MLP(hidden=64)
    assert hd.MLP(hidden=[64]).hidden == (64,)
