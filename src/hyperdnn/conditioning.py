"""Inputs axis: what the hypernetwork is conditioned on.

Each input is a small config (a dataclass, JSON-serialisable) whose ``build()``
makes the module that turns the call's arguments into a condition embedding.
Its *shape* decides the variability of inputs:

- static: ``z`` of shape ``(dim,)``, one weight set for the whole batch;
- per-sample (dynamic): ``z`` of shape ``(B, dim)``, one weight set per sample;
- ensemble: ``z`` of shape ``(k, dim)`` from ``k`` noise draws; every member
  sees the whole batch and the output gains a leading ``k`` dimension.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .config import InputConfig, checked, choice, instance_of, keyword, number, positive_int, require_config
from .errors import ConfigError, HDTypeError, ShapeError

Mode = Literal["static", "per_sample", "ensemble"]


@dataclass
class Condition:
    """A condition embedding and how it varies: ``z`` is ``(dim,)`` or ``(G, dim)``."""

    z: Tensor
    mode: Mode


class InputModule(nn.Module):
    """Built input: ``forward(x, conditions) -> Condition``; ``keywords`` it reads; width ``dim``."""

    dim: int
    keywords: tuple[str, ...] = ()

    def probe(self, count: int) -> Tensor:
        """Typical condition embeddings ``(count, dim)`` used to calibrate the initialisation."""
        return torch.randn(count, self.dim)


def cos_sin(c: Tensor) -> Tensor:
    """The MIP input encoding (Ortiz et al. 2023): ``(..., d) -> (..., 2d)``, ``[cos(pi c / 2), sin(pi c / 2)]``.

    For ``c`` in [0, 1] every pair lies on the unit circle, so the encoding's norm does not depend on ``c``.
    """
    return torch.cat([torch.cos(c * (math.pi / 2)), torch.sin(c * (math.pi / 2))], dim=-1)


# ---------------------------------------------------------------- task id


@dataclass
class TaskEmbedding(InputConfig):
    """Task id -> learned embedding (one row per task).

    Args:
        num_tasks: number of task ids; valid ids are ``0 .. num_tasks-1``.
        dim: embedding width.
        name: keyword of the call that carries the id, ``model(x, task=3)``; an int or
            0-d tensor is static, a ``(B,)`` integer tensor gives per-sample weights.
        init_std: standard deviation of the initial embeddings.
    """

    num_tasks: int = checked(positive_int)
    dim: int = checked(positive_int)
    name: str = checked(keyword, default="task")
    init_std: float = checked(number(0.0), default=1.0)

    def build(self) -> "TaskInput":
        return TaskInput(self.num_tasks, self.dim, self.name, self.init_std)


class TaskInput(InputModule):
    """Learned task embeddings; ``table`` is an ``nn.Embedding(num_tasks, dim)``."""

    def __init__(self, num_tasks: int, dim: int, name: str = "task", init_std: float = 1.0) -> None:
        super().__init__()
        self.num_tasks, self.dim, self.name = num_tasks, dim, name
        self.keywords = (name,)
        self.table = nn.Embedding(num_tasks, dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        value = conditions.get(self.name)
        if value is None:
            raise ConfigError(f"TaskEmbedding: this model needs {self.name}=<task id> (0..{self.num_tasks - 1})")
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            # The common static case, checked in Python: no tensor reductions per call.
            task = int(value)
            if not 0 <= task < self.num_tasks:
                raise ConfigError(f"TaskEmbedding: task id {task} out of range; expected 0..{self.num_tasks - 1}")
            return Condition(self.table.weight[task], "static")
        if not isinstance(value, Tensor):
            raise HDTypeError(f"TaskEmbedding: {self.name} must be an int or an integer tensor (got {type(value).__name__})")
        if value.dtype.is_floating_point or value.dtype == torch.bool:
            raise HDTypeError(f"TaskEmbedding: {self.name} must hold integers (got dtype {value.dtype})")
        if value.dim() > 1:
            raise ShapeError(f"TaskEmbedding: {self.name} must be a scalar or of shape (B,) (got {tuple(value.shape)})")
        low, high = (int(v) for v in value.aminmax()) if value.numel() else (0, 0)
        if low < 0 or high >= self.num_tasks:
            bad = low if low < 0 else high
            raise ConfigError(f"TaskEmbedding: task id {bad} out of range; expected 0..{self.num_tasks - 1}")
        z = self.table(value.to(self.table.weight.device))
        return Condition(z, "static" if value.dim() == 0 else "per_sample")

    def probe(self, count: int) -> Tensor:
        return self.table.weight.detach()


# ---------------------------------------------------------------- external


@dataclass
class External(InputConfig):
    """An embedding the caller provides, ``model(x, condition=c)``.

    Args:
        dim: width of the caller's vector.
        name: keyword of the call; ``(dim,)`` is static, ``(B, dim)`` per-sample.
        encoding: ``None``, or ``"cos-sin"``: the MIP input encoding of Ortiz et al.
            (2023) for values in [0, 1], ``[cos(pi c / 2), sin(pi c / 2)]`` (width ``2*dim``),
            whose norm does not depend on ``c``.
    """

    dim: int = checked(positive_int)
    name: str = checked(keyword, default="condition")
    encoding: str | None = checked(choice(None, "cos-sin"), default=None)

    def build(self) -> "ExternalInput":
        return ExternalInput(self.dim, self.name, self.encoding)


class ExternalInput(InputModule):
    """A caller-given embedding, optionally cos/sin-encoded."""

    def __init__(self, dim: int, name: str = "condition", encoding: str | None = None) -> None:
        super().__init__()
        self.in_dim, self.name, self.encoding = dim, name, encoding
        self.dim = 2 * dim if encoding == "cos-sin" else dim
        self.keywords = (name,)

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        c = conditions.get(self.name)
        if c is None:
            raise ConfigError(f"External: this model needs {self.name}=<tensor of shape ({self.in_dim},) or (B, {self.in_dim})>")
        if not isinstance(c, Tensor):
            raise HDTypeError(f"External: {self.name} must be a tensor (got {type(c).__name__})")
        if c.dim() not in (1, 2) or c.shape[-1] != self.in_dim:
            raise ShapeError(
                f"External: {self.name} has shape {tuple(c.shape)}; expected ({self.in_dim},) or (B, {self.in_dim})"
            )
        if self.encoding == "cos-sin":
            c = cos_sin(c)
        return Condition(c, "static" if c.dim() == 1 else "per_sample")

    def probe(self, count: int) -> Tensor:
        if self.encoding == "cos-sin":
            return cos_sin(torch.rand(count, self.in_dim))
        return torch.randn(count, self.dim)


# ---------------------------------------------------------------- data


@dataclass
class DataEncoder(InputConfig):
    """Data-conditioned input: ``z = encoder(x)``, one weight set per sample.

    Args:
        encoder: a module mapping the target's input ``x`` (batch first) to ``(B, dim)``;
            its weights are saved with the model, the module itself is not
            (``hd.load(..., encoder=module)``).
        dim: the encoder's output width.
    """

    encoder: nn.Module = checked(instance_of(nn.Module, "an nn.Module"), stored=False, doc="the encoder module")
    dim: int = checked(positive_int)

    def build(self) -> "DataInput":
        return DataInput(self.encoder, self.dim)


class DataInput(InputModule):
    """Runs the encoder on the data."""

    def __init__(self, encoder: nn.Module, dim: int) -> None:
        super().__init__()
        self.encoder, self.dim = encoder, dim

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        if not isinstance(x, Tensor):
            raise HDTypeError(f"DataEncoder: x must be a tensor (got {type(x).__name__})")
        z = self.encoder(x)
        if z.dim() != 2 or z.shape[-1] != self.dim:
            raise ShapeError(f"DataEncoder: encoder output has shape {tuple(z.shape)}; expected (B, {self.dim})")
        return Condition(z, "per_sample")


# ---------------------------------------------------------------- noise


@dataclass
class Noise(InputConfig):
    """Noise input ``z ~ N(0, std^2 I)``: each draw is one member of an implicit ensemble.

    Args:
        dim: width of ``z``.
        std: standard deviation of the draws.
        name: keyword giving the number of draws; ``model(x, samples=8)`` returns
            ``(8, B, ...)``; without it one draw is made and applied to the batch.
            The keyword also takes the draws themselves, a tensor ``z`` of shape
            ``(k, dim)`` (the same ``k`` members on every call: a fixed ensemble) or
            ``(dim,)`` (one fixed weight set); ``std`` is not applied to given draws.
    """

    dim: int = checked(positive_int)
    std: float = checked(number(0.0, low_open=True), default=1.0)
    name: str = checked(keyword, default="samples")

    def build(self) -> "NoiseInput":
        return NoiseInput(self.dim, self.std, self.name)


class NoiseInput(InputModule):
    """Draws fresh noise on every call (use ``torch.manual_seed`` for repeatable draws)."""

    def __init__(self, dim: int, std: float = 1.0, name: str = "samples") -> None:
        super().__init__()
        self.dim, self.std, self.name = dim, std, name
        self.keywords = (name,)
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # tracks device and dtype

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        k = conditions.get(self.name)
        anchor = self._anchor
        if k is None:
            return Condition(torch.randn(self.dim, device=anchor.device) * self.std, "static")
        if isinstance(k, Tensor):
            # Given draws: fixed members (the caller keeps z, e.g. drawn once with a torch.Generator).
            if k.dim() not in (1, 2) or k.shape[-1] != self.dim or not k.dtype.is_floating_point:
                raise ShapeError(
                    f"Noise: {self.name} given as draws must be a float tensor of shape (k, {self.dim}) or "
                    f"({self.dim},) (got {k.dtype} of shape {tuple(k.shape)}); or pass the number of draws"
                )
            return Condition(k.to(anchor.device), "static" if k.dim() == 1 else "ensemble")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"Noise: {self.name} must be a positive int or a (k, {self.dim}) tensor of draws (got {k!r})")
        return Condition(torch.randn(k, self.dim, device=anchor.device) * self.std, "ensemble")

    def probe(self, count: int) -> Tensor:
        return torch.randn(count, self.dim) * self.std


# ---------------------------------------------------------------- concatenation


@dataclass(init=False)
class Concat(InputConfig):
    """Concatenation of several inputs' embeddings (e.g. task + noise): ``Concat(a, b, ...)``.

    Static parts are broadcast to the batch of per-sample or ensemble parts;
    per-sample and ensemble parts cannot be mixed.
    """

    parts: tuple[InputConfig, ...]

    def __init__(self, *parts: InputConfig) -> None:
        if len(parts) == 1 and isinstance(parts[0], (list, tuple)):
            parts = tuple(parts[0])
        self.parts = tuple(parts)
        self.__post_init__()

    def check(self) -> None:
        if len(self.parts) < 2:
            raise ConfigError(f"Concat: needs at least two inputs (got {len(self.parts)})")
        for i, p in enumerate(self.parts):
            if isinstance(p, Concat):
                raise HDTypeError(f"Concat: part {i} is itself a Concat; list its parts in one Concat instead")
            require_config("Concat", f"part {i}", p, InputConfig)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> "Concat":
        return cls(*values.get("parts", ()))

    def build(self) -> "ConcatInput":
        return ConcatInput([p.build() for p in self.parts])


class ConcatInput(InputModule):
    """Concatenates its parts' embeddings along the last dimension."""

    def __init__(self, parts: list[InputModule]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.dim = sum(p.dim for p in parts)
        self.keywords = tuple(k for p in parts for k in p.keywords)
        if len(set(self.keywords)) != len(self.keywords):
            raise ConfigError(f"Concat: parts share a keyword name {list(self.keywords)}; give them distinct names")

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        conds = [p(x, conditions) for p in self.parts]
        modes = {c.mode for c in conds} - {"static"}
        if len(modes) > 1:
            raise ConfigError("Concat: cannot mix per-sample and ensemble inputs in one call")
        if not modes:
            return Condition(torch.cat([c.z for c in conds], -1), "static")
        mode = modes.pop()
        groups = next(c.z.shape[0] for c in conds if c.mode != "static")
        for c in conds:
            if c.mode != "static" and c.z.shape[0] != groups:
                raise ShapeError(f"Concat: parts give {c.z.shape[0]} and {groups} rows; expected the same")
        zs = [c.z.expand(groups, -1) if c.mode == "static" else c.z for c in conds]
        return Condition(torch.cat(zs, -1), mode)  # type: ignore[arg-type]

    def probe(self, count: int) -> Tensor:
        probes = [p.probe(count) for p in self.parts]
        rows = min(t.shape[0] for t in probes)
        return torch.cat([t[:rows] for t in probes], -1)


class NoInput(InputModule):
    """No condition: the hypernetwork depends on its own embeddings only (e.g. Ha et al.'s static hyper-conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 0
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def forward(self, x: Any, conditions: dict[str, Any]) -> Condition:
        return Condition(self._anchor.new_zeros(0), "static")

    def probe(self, count: int) -> Tensor:
        return torch.zeros(count, 0)
