"""The one config base: JSON round trips by the fields, the registry, and one set of checks everywhere."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
from torch import nn

import hyperdnn as hd
from hyperdnn.config import (
    BodyConfig,
    InputConfig,
    OutputConfig,
    checked,
    choice,
    from_dict,
    number,
    positive_int,
    registered,
    sizes,
    to_dict,
)

# One non-default instance of every built-in part (a new part adds one line).
EXAMPLES = [
    hd.TaskEmbedding(5, 7, name="tsk", init_std=0.5),
    hd.External(3, name="c", encoding="cos-sin"),
    hd.Noise(4, std=0.25, name="k"),
    hd.Concat(hd.TaskEmbedding(2, 3), hd.External(2)),
    hd.methods.Preference(3, name="pref", atol=1e-4),
    hd.MLP(hidden=(3, 5), activation="gelu", dropout=0.25),
    hd.MLP(hidden=(), activation=None),
    hd.RNN(hidden=7, cell="lstm", layers=2),
    hd.Attention(dim=12, heads=3, layers=1, ff=20),
    hd.GenerateOnce(),
    hd.MultiHead(embedding_dim=3),
    hd.ComponentWise(tile=(4, 2), embedding_dim=6, inner_dim=5),
    hd.ChunkWise(chunk_size=100, chunk_dim=9, chunk_init_std=0.5),
    hd.LowRank(rank=3, embedding_dim=2, on_small="full"),
    hd.Additive(inner=hd.LowRank(rank=2), scale=0.5, zero_init=False, learn_theta0=False),
    hd.Implicit(num_freqs=4, chunk_size=64, coord_noise=0.5, norm=32.0, kernel=9, scale="n-in"),
    hd.Implicit(encoding="grid", chunk_size=128, coord_noise=1.0),
    hd.methods.LoRAOutput(rank=4, alpha=8.0, layer_dim=3, kind_dim=5, decomposed=2, zero_init=False),
]
AXIS = {InputConfig: "inputs", BodyConfig: "body", OutputConfig: "outputs"}


def axis_base(cfg):
    return next(b for b in AXIS if isinstance(cfg, b))


def test_every_builtin_part_is_in_the_examples() -> None:
    names = {(AXIS[axis_base(c)], type(c).__name__) for c in EXAMPLES}
    known = {(axis, n) for axis in AXIS.values() for n, cls in registered(axis).items()
             if cls.__module__.startswith("hyperdnn.")} - {("inputs", "DataEncoder")}
    assert names == known


@pytest.mark.parametrize("cfg", EXAMPLES, ids=lambda c: type(c).__name__)
def test_round_trip_through_json_gives_the_same_config(cfg) -> None:
    data = json.loads(json.dumps(to_dict(cfg)))
    assert data["type"] == type(cfg).__name__
    back = from_dict(axis_base(cfg), data)
    assert back == cfg and type(back) is type(cfg)
    for f in dataclasses.fields(cfg):  # tuples come back as tuples, nested configs as configs
        assert type(getattr(back, f.name)) is type(getattr(cfg, f.name)), f.name
    assert type(cfg).from_dict(data) == cfg


def test_data_encoder_round_trips_with_the_module_given() -> None:
    enc = nn.Linear(3, 4)
    data = to_dict(hd.DataEncoder(enc, 4))
    assert data == {"type": "DataEncoder", "dim": 4}  # the module is not written
    with pytest.raises(hd.ConfigError, match="pass encoder="):
        from_dict(InputConfig, data)
    back = from_dict(InputConfig, {"type": "Concat", "parts": [data, {"type": "Noise", "dim": 2}]}, encoder=enc)
    assert back.parts[0].encoder is enc and back.parts[1] == hd.Noise(2)


def test_a_new_part_joins_by_being_defined() -> None:
    @dataclass
    class Conv1dBody(BodyConfig, name="test-conv1d"):
        widths: tuple[int, ...] = checked(sizes(example=(8,)), default=(8, 8))
        kernel: int = checked(positive_int, default=3)
        pad: str = checked(choice("same", "valid"), default="same")
        mixes_tokens: ClassVar[bool] = True

        def build(self, in_features: int) -> nn.Module:
            raise NotImplementedError

    assert registered("body")["test-conv1d"] is Conv1dBody
    cfg = Conv1dBody(widths=[4, 6], kernel=5)
    assert cfg.widths == (4, 6)  # a list of sizes is stored as a tuple
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data == {"type": "test-conv1d", "widths": [4, 6], "kernel": 5, "pad": "same"}
    back = from_dict(BodyConfig, data)
    assert back == cfg and isinstance(back.widths, tuple) and back.mixes_tokens
    with pytest.raises(hd.ConfigError, match=r"Conv1dBody: widths must be a tuple of ints such as \(8,\)"):
        Conv1dBody(widths=(4, 0))
    with pytest.raises(hd.ConfigError, match="type name 'test-conv1d' is taken"):
        @dataclass
        class Other(BodyConfig, name="test-conv1d"):
            mixes_tokens: ClassVar[bool] = False
    with pytest.raises(hd.ConfigError, match="a part of the body axis must set the class attribute mixes_tokens"):
        @dataclass
        class Silent(BodyConfig):
            width: int = checked(positive_int, default=3)


def test_plain_recipe_dataclasses_round_trip() -> None:
    @dataclass
    class Recipe:
        steps: int = 10
        lr: float = 1e-3
        name: str = "x"
        flag: bool = True
        hidden: tuple[int, ...] = (400, 400)
        schedule: list[float] = field(default_factory=lambda: [0.5, 0.25])
        reg_tasks: int | None = None
        pair: tuple[int, str] = (1, "a")

    cfg = Recipe(steps=3, hidden=(7,), schedule=[1.0], reg_tasks=2, pair=(2, "b"))
    data = json.loads(json.dumps(to_dict(cfg)))
    assert "type" not in data
    back = from_dict(Recipe, data)
    assert back == cfg and isinstance(back.hidden, tuple) and isinstance(back.schedule, list) and back.pair == (2, "b")
    with pytest.raises(hd.ConfigError, match="Recipe has no stored field 'stpes'"):
        from_dict(Recipe, {"stpes": 3})


def test_mixes_tokens_is_read_from_the_body_config() -> None:
    assert (hd.MLP().mixes_tokens, hd.RNN().mixes_tokens, hd.Attention().mixes_tokens) == (False, True, True)
    for cfg, (n_in, size) in ((hd.MLP(hidden=(4,)), (3, 4)), (hd.RNN(hidden=4), (3, 4)), (hd.Attention(dim=4, heads=2), (3, 4))):
        assert cfg.build(n_in).mixes_tokens == cfg.mixes_tokens


# ------------------------------------------------------------ one set of checks


@pytest.mark.parametrize("make,message", [
    (lambda: hd.ChunkWise(chunk_dim=True), r"ChunkWise: chunk_dim must be a positive int \(got True, a bool\)"),
    (lambda: hd.LowRank(rank=True), r"LowRank: rank must be a positive int \(got True, a bool\)"),
    (lambda: hd.RNN(hidden=True), r"RNN: hidden must be a positive int \(got True, a bool\)"),
    (lambda: hd.ChunkWise(chunk_size=True), r"ChunkWise: chunk_size must be a positive int \(got True, a bool\)"),
    (lambda: hd.MLP(hidden=(True,)), r"MLP: hidden must be a tuple of ints such as \(64,\), each > 0 \(got \(True,\): element 0 is True, a bool\)"),
    (lambda: hd.MLP(hidden=64), r"MLP: hidden must be a tuple of ints such as \(64,\), each > 0 \(got 64\)"),
    (lambda: hd.MLP(hidden=(64, 0)), r"MLP: hidden must be a tuple of ints .* element 1 is 0"),
    (lambda: hd.TaskEmbedding(3, 4, init_std=math.nan), r"TaskEmbedding: init_std must be a finite number >= 0 \(got nan\)"),
    (lambda: hd.TaskEmbedding(3, 4, init_std=-1.0), r"TaskEmbedding: init_std must be a finite number >= 0 \(got -1.0\)"),
    (lambda: hd.Noise(3, std=math.inf), r"Noise: std must be a finite number > 0 \(got inf\)"),
    (lambda: hd.ChunkWise(chunk_init_std=math.nan), r"ChunkWise: chunk_init_std must be a finite number >= 0 \(got nan\)"),
    (lambda: hd.Additive(scale=-math.inf), r"Additive: scale must be a finite number \(got -inf\)"),
    (lambda: hd.Additive(zero_init=1), r"Additive: zero_init must be True or False \(got 1, an int\)"),
    (lambda: hd.MLP(dropout=math.nan), r"MLP: dropout must be a finite number in \[0, 1\) \(got nan\)"),
    (lambda: hd.MLP(dropout=1.0), r"MLP: dropout must be a finite number in \[0, 1\) \(got 1.0\)"),
    (lambda: hd.TaskEmbedding(2.5e8, 4), r"TaskEmbedding: num_tasks must be a positive int \(got 250000000.0, a float\)"),
    (lambda: hd.TaskEmbedding(3, 4, name="not a keyword"), r"TaskEmbedding: name must be a keyword name"),
    (lambda: hd.RNN(cell="LSTM"), r"RNN: cell must be 'gru' or 'lstm' \(got 'LSTM'\)"),
    (lambda: hd.ComponentWise(tile=(4, True)), r"ComponentWise: tile must be two positive ints such as \(16, 16\) \(got \(4, True\): element 1 is True, a bool\)"),
    (lambda: hd.Attention(ff=True), r"Attention: ff must be a positive int \(got True, a bool\) \(or None\)"),
])
def test_bad_values_raise_config_error_naming_part_value_and_expectation(make, message) -> None:
    with pytest.raises(hd.ConfigError, match=message):
        make()


def _int_and_float_fields():
    for cfg in EXAMPLES:
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if isinstance(v, int) and not isinstance(v, bool):
                yield cfg, f.name, "int"
            elif isinstance(v, float):
                yield cfg, f.name, "float"


@pytest.mark.parametrize("cfg,name,kind", list(_int_and_float_fields()),
                         ids=lambda v: type(v).__name__ if dataclasses.is_dataclass(v) else str(v))
def test_every_size_refuses_bools_and_every_float_refuses_nan_and_inf(cfg, name, kind) -> None:
    bad = [True, False, 0, -3, 2.5, "4"] if kind == "int" else [math.nan, math.inf, -math.inf, True, "1.0"]
    for value in bad:
        with pytest.raises(hd.ConfigError, match=f"{type(cfg).__name__}: {name} must be"):
            dataclasses.replace(cfg, **{name: value})


def test_number_and_choice_checks_on_their_own() -> None:
    unit = number(0.0, 1.0, high_open=True)
    assert unit("p", "x", 0) == 0.0 and isinstance(unit("p", "x", 0), float)
    with pytest.raises(hd.ConfigError, match=r"p: x must be a finite number in \[0, 1\) \(got 1\)"):
        unit("p", "x", 1)
    pick = choice(None, "a")
    assert pick("p", "y", None) is None and pick("p", "y", "a") == "a"
    with pytest.raises(hd.ConfigError, match="p: y must be None or 'a'"):
        pick("p", "y", False)
    assert positive_int("p", "n", __import__("numpy").int64(3)) == 3


# ------------------------------------------------------------ from_dict refuses malformed dicts


@pytest.mark.parametrize("data,message", [
    ([["dim", 3]], "outputs: expected an object"),
    ({"rank": 3}, "outputs: no 'type' given; expected one of"),
    ({"type": "Pickle"}, r"outputs: unknown outputs type 'Pickle'; expected one of \['Additive'"),
    ({"type": "ChunkWise", "chunk_size": 4, "evil": 1}, "ChunkWise has no stored field 'evil'"),
    ({"type": "LowRank", "rank": 2.5e8}, r"outputs: LowRank: rank must be a positive int \(got 250000000.0, a float\)"),
    ({"type": "Additive", "inner": {"type": "LowRank", "rank": True}}, r"outputs.inner: LowRank: rank must be a positive int"),
    ({"type": "Additive", "inner": [1]}, r"outputs.inner: expected an object"),
    ({"type": "ComponentWise", "tile": {"a": 1}}, r"tile must be two positive ints"),
    ({"type": "ChunkWise", "chunk_init_std": math.nan}, r"chunk_init_std must be a finite number >= 0 \(got nan\)"),
])
def test_malformed_dicts_raise_config_error_saying_where(data, message) -> None:
    with pytest.raises(hd.ConfigError, match=message):
        from_dict(OutputConfig, data, where="outputs")


def test_deeply_nested_configs_are_refused_without_recursion_error() -> None:
    data: dict = {"type": "GenerateOnce"}
    for _ in range(5000):
        data = {"type": "Additive", "inner": data}
    with pytest.raises(hd.ConfigError, match="nested more than"):
        from_dict(OutputConfig, data)


def test_required_fields_and_axis_mismatch() -> None:
    with pytest.raises(hd.ConfigError, match="TaskEmbedding needs the field 'dim'"):
        from_dict(InputConfig, {"type": "TaskEmbedding", "num_tasks": 3})
    with pytest.raises(hd.ConfigError, match=r"unknown body type 'LowRank'"):
        from_dict(BodyConfig, {"type": "LowRank"})
    with pytest.raises(hd.ConfigError, match="unknown axis"):
        registered("bodies")


def test_every_recipe_config_round_trips_through_the_same_functions() -> None:
    from hyperdnn.experiments.registry import all_recipes

    recipes = all_recipes()
    assert len(recipes) >= 6
    for r in recipes:
        cfg = r.config()
        data = json.loads(json.dumps(to_dict(cfg)))
        back = from_dict(r.config, data)
        assert back == cfg, r.name
        for f in dataclasses.fields(cfg):
            assert type(getattr(back, f.name)) is type(getattr(cfg, f.name)), (r.name, f.name)


def test_the_cos_sin_encoding_is_one_helper_used_by_forward_and_probe() -> None:
    import torch

    from hyperdnn.conditioning import cos_sin

    c = torch.rand(5, 3)
    ref = torch.cat([torch.cos(c * math.pi / 2), torch.sin(c * math.pi / 2)], -1)
    assert torch.equal(cos_sin(c), ref)
    built = hd.External(3, encoding="cos-sin").build()
    assert torch.equal(built(None, {"condition": c}).z, ref)
    probe = built.probe(7)  # values in [0, 1]: each (cos, sin) pair lies on the unit circle
    torch.testing.assert_close(probe[:, :3] ** 2 + probe[:, 3:] ** 2, torch.ones(7, 3))
