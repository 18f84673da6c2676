"""The output contract: a generated tensor is dense, or a :class:`Factored` value.

It sits beside ``outputs/`` (which re-exports it) because the target paths read it too.

Every output strategy returns ``{name: Tensor | Factored}``. A dense tensor has
the parameter's shape (or ``(G, *shape)`` for ``G`` weight sets). A
``Factored`` value says how its parts compose,

    W = base + scale * (A @ B^T).unflatten(-1, shape[1:])

with ``A: (..., out, r)`` and ``B: (..., in, r)`` where ``in = prod(shape[1:])``.
The target paths that gain from it (Linear, Conv, Embedding with per-sample
weights) consume the parts without ever forming ``W``; everything else calls
:meth:`Factored.dense`. Nothing outside ``outputs/`` and the target paths
knows which strategy made a tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ShapeError


@dataclass(frozen=True)
class Factored:
    """A weight ``base + scale * A B^T`` kept in parts.

    Attributes:
        a: ``(out, r)`` or ``(G, out, r)``.
        b: ``(in, r)`` or ``(G, in, r)``, ``in = prod(shape[1:])``.
        shape: the parameter's shape ``(out, *rest)``, without a group dimension.
        base: ``None`` (zero), or a tensor of ``shape`` (shared by all groups) or
            ``(G, *shape)``.
        scale: multiplier of the low-rank part.
        dropout: probability of dropout on the input of the low-rank branch in training
            mode (PEFT's ``lora_dropout``): ``W0 x + scale * A (B^T dropout(x))``. Only the
            Linear and Conv paths apply it; a path that must form ``W`` refuses a value > 0
            in training (the dropout is not a property of ``W``).

    Example:
        >>> f = Factored(torch.randn(3, 2), torch.randn(4, 2), (3, 4))
        >>> f.dense().shape
        torch.Size([3, 4])
    """

    a: Tensor
    b: Tensor
    shape: tuple[int, ...]
    base: Tensor | None = None
    scale: float = 1.0
    dropout: float = 0.0

    @property
    def groups(self) -> int | None:
        """``G`` for per-group factors, ``None`` for one weight set."""
        return self.a.shape[0] if self.a.dim() == 3 else None

    @property
    def base_batched(self) -> bool:
        return self.base is not None and self.base.dim() == len(self.shape) + 1

    def low_rank(self) -> Tensor:
        """``scale * A B^T`` reshaped to ``(..., *shape)``."""
        w = torch.matmul(self.a, self.b.transpose(-1, -2)).unflatten(-1, self.shape[1:])
        return w if self.scale == 1.0 else self.scale * w

    def dense(self) -> Tensor:
        """The weight as one tensor, ``shape`` or ``(G, *shape)``."""
        w = self.low_rank()
        return w if self.base is None else self.base + w

    def with_base(self, base: Tensor, scale: float) -> "Factored":
        """``base + scale * self`` (the additive output's composition), still factored."""
        if self.base is not None:
            base = base + scale * self.base
        return Factored(self.a, self.b, self.shape, base, scale * self.scale, self.dropout)

    def parts(self) -> dict[str, Tensor]:
        """The tensors it holds, by role (for finiteness checks and inspection)."""
        out = {"A": self.a, "B": self.b}
        if self.base is not None:
            out["base"] = self.base
        return out

    @property
    def numel(self) -> int:
        """Numbers held (the parts), which is what a factored weight costs."""
        return sum(t.numel() for t in self.parts().values())

    def __post_init__(self) -> None:
        # Internal contract between output strategies and target paths: a wrong
        # shape here is a bug in a strategy, and it must not pass silently.
        if not 0.0 <= self.dropout < 1.0:
            raise ShapeError(f"Factored: dropout must be in [0, 1) (got {self.dropout!r})")
        fan_in = math.prod(self.shape[1:])
        if self.a.shape[-2] != self.shape[0] or self.b.shape[-2] != fan_in or self.a.shape[-1] != self.b.shape[-1]:
            raise ShapeError(
                f"Factored: A {tuple(self.a.shape)} and B {tuple(self.b.shape)} do not compose to {self.shape}"
            )


def dense(w: Tensor | Factored) -> Tensor:
    """A generated value as one tensor (``Factored`` values are formed, tensors pass through)."""
    return w.dense() if isinstance(w, Factored) else w


def dense_for(module: "torch.nn.Module", w: Tensor | Factored) -> Tensor:
    """``w`` formed as one tensor for ``module``, whose path needs ``W`` itself.

    Raises:
        ConfigError: ``w`` carries dropout on its low-rank branch and ``module`` is in
            training mode (forming ``W`` would drop the dropout silently).
    """
    if isinstance(w, Factored) and w.dropout > 0 and module.training:
        from .errors import ConfigError

        raise ConfigError(
            f"{type(module).__name__}: a factored weight with dropout={w.dropout} on its low-rank branch "
            "(lora_dropout) runs only in nn.Linear and ungrouped nn.Conv layers in training mode; "
            "use dropout 0 for this module or call model.eval()"
        )
    return dense(w)


def densify(theta: dict[str, Tensor | Factored]) -> dict[str, Tensor]:
    """Every value of ``theta`` as one tensor."""
    return {n: dense(w) for n, w in theta.items()}
