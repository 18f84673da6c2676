"""Ensemble-like models behind one call: ``members(x) -> (k, B, ...)``, one row per member.

- a HyperDNN with a ``Noise`` input: fresh draws on every call (training) or
  :class:`FixedMembers`, ``k`` draws made once (with a ``torch.Generator``) and
  reused, so that evaluation sees the same ensemble on every batch;
- a list of networks (a deep ensemble): :class:`DeepEnsemble`;
- MC dropout (Gal & Ghahramani 2016): :class:`MCDropout`, dropout kept on at
  evaluation, ``k`` masks drawn in one batched call.

:func:`as_members` turns any of these (or a plain network, ``k = 1``) into the
callable that :func:`hyperdnn.methods.uncertainty.evaluate` uses, so the
baselines run through the same metrics code as the hypernetwork.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from hyperdnn.batched.members import CPU_ROWS_PER_CALL, members_per_call
from hyperdnn.conditioning import NoiseInput
from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.hyperdnn import HyperDNN

__all__ = ["CPU_ROWS_PER_CALL", "DeepEnsemble", "FixedMembers", "MCDropout", "as_members", "members_per_call", "noise_input"]

def noise_input(model: HyperDNN, part: str) -> NoiseInput:
    """The model's ``Noise`` input module (HDTypeError / ConfigError when it has none)."""
    if not isinstance(model, HyperDNN):
        raise HDTypeError(f"{part}: needs a hd.HyperDNN (got {type(model).__name__})")
    inputs = model.hypernetwork.inputs
    if not isinstance(inputs, NoiseInput):
        raise ConfigError(
            f"{part}: the model's input is {type(inputs).__name__}; an implicit ensemble needs "
            "HyperDNN(..., inputs=hd.Noise(dim))"
        )
    return inputs


def _positive_int(part: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{part}: {name} must be a positive int (got {value!r})")
    return value


class FixedMembers(nn.Module):
    """``k`` members of a noise-conditioned HyperDNN, fixed: the draws ``z (k, dim)`` are made
    once and reused, so every call (every batch) sees the same ensemble.

    Args:
        model: a HyperDNN with a ``Noise`` input.
        k: number of members.
        generator: a ``torch.Generator`` for the draws (default: the global RNG);
            ``seed`` makes one.
        z: the draws themselves ``(k, dim)`` instead of drawing them.
        per_call: members per batched call of the target; None (default) chooses by
            :func:`members_per_call` (all at once on an accelerator, chunks on a CPU).

    Calling ``members(x)`` returns ``model(x, samples=z)``: ``(k, B, ...)`` (computed in
    chunks of members where that is faster; the same numbers). The draws are a buffer
    (saved in ``state_dict``).
    """

    def __init__(self, model: HyperDNN, k: int | None = None, *, generator: torch.Generator | None = None,
                 seed: int | None = None, z: Tensor | None = None, per_call: int | None = None) -> None:
        super().__init__()
        noise = noise_input(model, "FixedMembers")
        if z is None:
            k = _positive_int("FixedMembers", "k", k)
            if generator is None and seed is not None:
                generator = torch.Generator().manual_seed(seed)
            z = torch.randn(k, noise.dim, generator=generator) * noise.std
        elif k is not None and z.shape[0] != k:
            raise ConfigError(f"FixedMembers: k={k} but z has {z.shape[0]} rows; give one of them")
        if per_call is not None:
            _positive_int("FixedMembers", "per_call", per_call)
        self.model = model
        self.name = noise.name
        self.per_call = per_call
        device = next(model.hypernetwork.parameters()).device
        self.register_buffer("z", z.to(device).detach().clone())

    @property
    def k(self) -> int:
        return int(self.z.shape[0])

    def forward(self, x: Tensor, **kwargs: Any) -> Any:
        k = self.k
        batch = x.shape[self.model.batch_dim] if isinstance(x, Tensor) and x.dim() > self.model.batch_dim else 1
        per_call = self.per_call or members_per_call(k, batch, self.z.device)
        if per_call >= k and k > 1:
            return self.model(x, **{self.name: self.z}, **kwargs)
        # One member per call runs the target's own forward (a 1-D draw: one weight set).
        draws = list(self.z) if per_call == 1 else list(self.z.split(per_call))
        parts = [self.model(x, **{self.name: z}, **kwargs) for z in draws]
        if not all(isinstance(p, Tensor) for p in parts):
            return self.model(x, **{self.name: self.z}, **kwargs)  # a structured output: one call
        return torch.stack(parts) if per_call == 1 else torch.cat(parts)


class DeepEnsemble(nn.Module):
    """A list of independently trained networks as one ensemble: ``(k, B, ...)``.

    Lakshminarayanan, Pritzel, Blundell, "Simple and scalable predictive uncertainty
    estimation using deep ensembles", NeurIPS 2017.
    """

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        if not len(networks):
            raise ConfigError("DeepEnsemble: needs at least one network (got an empty list)")
        self.networks = nn.ModuleList(networks)

    @property
    def k(self) -> int:
        return len(self.networks)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([net(x) for net in self.networks])


class MCDropout(nn.Module):
    """Monte-Carlo dropout (Gal & Ghahramani, ICML 2016): dropout stays on at evaluation and
    ``k`` masks make ``k`` members. The ``k`` passes run as one call on the batch repeated
    ``k`` times (each row draws its own mask), so no Python loop.

    Args:
        network: a network with ``nn.Dropout`` modules and the batch in dim 0.
        k: number of masks (members).
    """

    def __init__(self, network: nn.Module, k: int) -> None:
        super().__init__()
        self.network = network
        self.k = _positive_int("MCDropout", "k", k)
        self._dropouts = [m for m in network.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if not self._dropouts:
            raise ConfigError("MCDropout: the network has no nn.Dropout module; add one (e.g. before each Linear)")

    def forward(self, x: Tensor) -> Tensor:
        before = [m.training for m in self._dropouts]
        try:
            for m in self._dropouts:
                m.train()
            y = self.network(x.repeat(self.k, *[1] * (x.dim() - 1)))
        finally:
            for m, t in zip(self._dropouts, before):
                m.train(t)
        return y.unflatten(0, (self.k, x.shape[0]))


def as_members(model: Any, samples: int | None = None, *, generator: torch.Generator | None = None) -> tuple[Callable[[Tensor], Tensor], nn.Module | None]:
    """The ensemble behind ``model`` as ``(members, module)``: ``members(x) -> (k, B, C)``.

    Args:
        model: a noise-conditioned HyperDNN (``samples`` members fixed with ``generator``),
            :class:`FixedMembers`, :class:`DeepEnsemble`, :class:`MCDropout`, a list of
            networks, or any network (one member).
        samples: members to draw from a HyperDNN (needed there, refused elsewhere unless it
            matches the ensemble's size).
    """
    if isinstance(model, HyperDNN):
        if samples is None:
            raise ConfigError("evaluate: a HyperDNN ensemble needs samples=k (the number of draws)")
        fixed = FixedMembers(model, samples, generator=generator)
        return fixed, model
    if isinstance(model, (list, tuple, nn.ModuleList)):
        model = DeepEnsemble(list(model))
    if isinstance(model, (FixedMembers, DeepEnsemble, MCDropout)):
        if samples is not None and samples != model.k:
            raise ConfigError(f"evaluate: samples={samples} but the ensemble has {model.k} members; drop samples")
        return model, model
    if isinstance(model, nn.Module):
        if samples not in (None, 1):
            raise ConfigError(
                f"evaluate: samples={samples} for a plain {type(model).__name__}; wrap it (MCDropout(net, k)) "
                "or pass a list of networks"
            )
        return (lambda x: model(x).unsqueeze(0)), model
    if callable(model):
        return model, None
    raise HDTypeError(f"evaluate: model must be a HyperDNN, an ensemble, a list of networks or a network (got {type(model).__name__})")
