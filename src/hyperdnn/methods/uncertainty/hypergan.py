"""HyperGAN-style training: the task loss on k draws plus a term that keeps the draws apart.

HyperGAN (Ratzlaff & Fuxin, ICML 2019) maps noise through a *mixer* into
per-layer codes, one generator per layer turns its code into that layer's
weights, and the loss is the task loss of every draw plus a discriminator that
keeps the mixer's codes close to a prior, so that the draws do not collapse to
one network. Here the mixer is the HyperDNN's body and the generators are its
output heads (``hd.MultiHead``: one head per target tensor; each head reads the
whole mixer output, not a slice of it), and the discriminator is replaced by a
stated kernel estimator of the entropy of the generated weights themselves
(no adversary to train):

    L = mean_{i, b} NLL(y_b | F(x_b; theta_i)) - beta * H_hat(theta_1..k),
    H_hat = -(1/k) sum_i log (1/k) sum_j exp(-||theta_i - theta_j||^2 / h),

the resubstitution kernel-density estimate of the entropy (up to a constant),
with the RBF bandwidth ``h`` from the median heuristic (detached). Its gradient
pushes every pair of draws apart in proportion to their kernel weight, like the
repulsive part of SVGD in weight space; ``beta = 0`` is plain training of k
draws (the ablation: the draws then barely disagree).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.factored import densify
from hyperdnn.hyperdnn import HyperDNN

from .kernel import median_bandwidth, squared_distances
from .objective import EnsembleObjective

__all__ = ["HyperGAN", "kernel_entropy"]


def kernel_entropy(theta: Tensor) -> Tensor:
    """The kernel-density entropy estimate ``H_hat`` of draws ``theta (k, P)`` (nats, up to a
    constant), RBF kernel with the median bandwidth. Differentiable in ``theta``."""
    if theta.dim() != 2 or theta.shape[0] < 2:
        raise ConfigError(f"kernel_entropy: needs (k, P) draws with k >= 2 (got shape {tuple(theta.shape)})")
    d = squared_distances(theta)
    h = median_bandwidth(d)
    k = theta.shape[0]
    return -(torch.logsumexp(-d / h, dim=1) - torch.log(torch.tensor(float(k), dtype=theta.dtype))).mean()


class HyperGAN(EnsembleObjective):
    """A noise-conditioned HyperDNN trained as an implicit ensemble, HyperGAN-style.

    Args:
        model: a HyperDNN with a ``Noise`` input (HyperGAN: ``outputs=hd.MultiHead(...)``).
        samples: draws per step ``k`` (HyperGAN trains with a batch of draws; >= 2 when
            ``beta > 0``).
        beta: weight of the entropy term (0: the ablation without diversity term).
        likelihood: ``"categorical"`` or ``Gaussian(std)``.

    Example (in the user's loop)::

        method = hd.methods.uncertainty.HyperGAN(model, samples=8, beta=1.0)
        for x, y in loader:
            method.step(x, y, optimizer)
        results = method.evaluate(test_loader, samples=16, ood=ood_loader)
    """

    def __init__(self, model: HyperDNN, *, samples: int = 8, beta: float = 1.0, likelihood: Any = "categorical") -> None:
        super().__init__(model, samples=samples, likelihood=likelihood)
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta < 0:
            raise ConfigError(f"HyperGAN: beta must be a number >= 0 (got {beta!r})")
        if beta > 0 and samples < 2:
            raise ConfigError(f"HyperGAN: the entropy term needs samples >= 2 (got {samples}); or set beta=0")
        self.beta = float(beta)

    def terms(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k, model = self.samples, self.model
        z = model.condition(**{self.noise.name: k}).z  # (k, dim): fresh draws
        theta = model.weights(dense=False, **{self.noise.name: z})
        f = model.run_target(x.repeat(k, *[1] * (x.dim() - 1)), theta).unflatten(0, (k, x.shape[0]))
        task = self.likelihood.nll(f, y)
        if self.beta == 0:
            return task, task, task.new_zeros(())
        flat = torch.cat([t.reshape(k, -1) for t in densify(theta).values()], 1)
        div = -self.beta * kernel_entropy(flat)
        return task + div, task, div
