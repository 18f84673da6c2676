"""The gradient-inversion experiment: what one client shares in one step under FedAvg (the
model's gradient) and under HyperFL (the hypernetwork's gradient), and what DLG/iDLG recover."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from hyperdnn.hyperdnn import HyperDNN

from .attack import Reconstruction, infer_labels, invert_gradients
from .hyperfl import SHARED_PREFIX

__all__ = ["attack_fedavg", "attack_hyperfl"]


def attack_fedavg(net: nn.Module, x: Tensor, y: Tensor, *, steps: int = 100, generator: torch.Generator | None = None) -> Reconstruction:
    """iDLG on FedAvg: the client shares ``grad_theta CE(net(x), y)`` (one local step); the
    attacker knows ``net`` (the global model), infers the labels from the last bias gradient
    and matches the gradient.

    Args:
        net: the global model (its last module's bias is read for the labels).
        x: ``(B, ...)`` the client's batch; y: ``(B,)`` distinct labels.
        steps: L-BFGS iterations.
    """
    params = dict(net.named_parameters())

    def grad_fn(xd: Tensor, yd: Tensor) -> list[Tensor]:
        loss = F.cross_entropy(functional_call(net, params, (xd,)), yd)
        return list(torch.autograd.grad(loss, list(params.values()), create_graph=True))

    shared = [g.detach() for g in grad_fn(x, y)]
    last_bias = shared[-1]
    labels = infer_labels(last_bias, len(x))
    return invert_gradients(grad_fn, shared, x.shape, labels=labels, steps=steps, generator=generator)


def attack_hyperfl(model: HyperDNN, target_fn: Callable[[], nn.Module], x: Tensor, y: Tensor, *, steps: int = 100,
                   generator: torch.Generator | None = None) -> Reconstruction:
    """DLG on HyperFL: the client shares the gradient of the hypernetwork's parameters only;
    the attacker knows the hypernetwork and, to be strong, the true labels, but not the
    client's embedding or classifier, so it optimises guesses of both with the inputs.

    Args:
        model: the client's HyperFL model (:func:`hyperfl_model`), its private parts the truth.
        target_fn: makes the client network (to run it with given weights).
        x: ``(B, ...)`` the client's batch; y: ``(B,)`` labels.
        steps: L-BFGS iterations.
    """
    shared_params = {k: p for k, p in model.named_parameters() if k.startswith(SHARED_PREFIX)}
    hyper = model.hypernetwork
    net = target_fn()
    own = {k[len("target."):]: p for k, p in model.named_parameters() if k.startswith("target.")}
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    v = (torch.randn(model.hypernetwork.inputs.dim, generator=gen)).requires_grad_(True)  # the attacker's guesses
    guess = {k: (0.1 * torch.randn(p.shape, generator=gen)).requires_grad_(True) for k, p in own.items()}

    def run(xd: Tensor, z: Tensor, private: dict[str, Tensor]) -> Tensor:
        theta = hyper(z)  # {generated name: tensor}, differentiable in the shared parameters
        return functional_call(net, {**theta, **private}, (xd,))

    def grads(xd: Tensor, yd: Tensor, z: Tensor, private: dict[str, Tensor], create: bool) -> list[Tensor]:
        loss = F.cross_entropy(run(xd, z, private), yd)
        return list(torch.autograd.grad(loss, list(shared_params.values()), create_graph=create))

    true_v = model.hypernetwork.inputs.table.weight[0].detach()
    shared = [g.detach() for g in grads(x, y, true_v, {k: p.detach() for k, p in own.items()}, False)]
    return invert_gradients(lambda xd, yd: grads(xd, yd, v, guess, True), shared, x.shape, labels=y, steps=steps,
                            extra=[v, *guess.values()], generator=gen)
