"""Function-space Stein variational gradient descent over a hypernetwork's draws.

The k draws ``f_i = F(x; H(z_i))`` on a batch are particles of a posterior
over functions (Wang, Ren, Zhu, Zhang, "Function space particle optimization
for Bayesian neural networks", ICLR 2019). Each step moves every particle
along the Stein direction

    phi_i = (1/k) sum_j [ K(f_j, f_i) grad_{f_j} log p(y | f_j)
                          + alpha * grad_{f_j} K(f_j, f_i) ]

(RBF kernel on the batch's outputs, median bandwidth), and, since the particles
come from a generator, the direction is pulled back into the hypernetwork by
the surrogate loss ``-(1/(k B)) sum_i <f_i, phi_i>`` with ``phi`` detached
(amortized SVGD, Feng, Wang & Liu 2017; a hypernetwork generator as in
Ratzlaff et al., "Generative particle variational inference via estimation of
functional gradients", ICML 2021). Why this rather than Krueger et al.'s
Bayesian hypernetworks: their entropy term needs an invertible (normalizing
flow) hypernetwork, which the library's bodies are not, while SVGD needs only
samples; and a kernel on functions does not see the many weight settings that
compute the same function (permuted units), which a weight-space kernel does.

The first sum is the likelihood's pull (members that agree share their
gradients), the second the repulsion; ``alpha`` scales the repulsion (1 is
the posterior of the batch; larger values act as a higher temperature). The
likelihood's gradient is that of the batch alone: no prior term (use the
optimizer's weight decay for one).

``measurement`` optionally adds inputs where the functions are compared but
no label pulls them (zero likelihood gradient there): the kernel then also
sees the members' disagreement off the data, e.g. points spread over the input
range of a regression. Wang et al. measure functions on the batch plus extra
points in the same spirit; the choice of points here is ours.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from torch import Tensor

from hyperdnn.errors import ConfigError
from hyperdnn.hyperdnn import HyperDNN

from .kernel import median_bandwidth, squared_distances
from .objective import EnsembleObjective

__all__ = ["FunctionalSVGD", "stein_direction"]


def stein_direction(f: Tensor, grad: Tensor, alpha: float = 1.0) -> tuple[Tensor, Tensor]:
    """The SVGD direction for particles ``f (k, P)`` with log-density gradients ``grad (k, P)``.

    Returns:
        ``(drive, repulse)``, each ``(k, P)``: ``(1/k) sum_j K_ji grad_j`` and
        ``(alpha/k) sum_j grad_{f_j} K_ji = (2 alpha / (k h)) sum_j K_ji (f_i - f_j)``.
    """
    k = f.shape[0]
    d = squared_distances(f)
    h = median_bandwidth(d) if k > 1 else d.new_ones(())
    kern = (-d / h).exp()  # symmetric
    drive = kern @ grad / k
    repulse = (2 * alpha / (k * h)) * (kern.sum(1, keepdim=True) * f - kern @ f)
    return drive, repulse


class FunctionalSVGD(EnsembleObjective):
    """A noise-conditioned HyperDNN trained by function-space SVGD over its ``k`` draws.

    Args:
        model: a HyperDNN with a ``Noise`` input.
        samples: particles (draws) per step ``k`` (>= 2).
        alpha: weight of the repulsion (1: the batch posterior).
        likelihood: ``"categorical"`` or ``Gaussian(std)``.
        measurement: optional ``x -> extra inputs (M, ...)`` compared by the kernel without
            labels (see the module docstring); None: the batch only.
    """

    def __init__(self, model: HyperDNN, *, samples: int = 8, alpha: float = 1.0, likelihood: Any = "categorical",
                 measurement: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(model, samples=samples, likelihood=likelihood)
        if samples < 2:
            raise ConfigError(f"FunctionalSVGD: needs samples >= 2 particles (got {samples})")
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha < 0:
            raise ConfigError(f"FunctionalSVGD: alpha must be a number >= 0 (got {alpha!r})")
        self.alpha = float(alpha)
        if measurement is not None and not callable(measurement):
            raise ConfigError(f"FunctionalSVGD: measurement must be a callable x -> extra inputs (got {type(measurement).__name__})")
        self.measurement = measurement

    def terms(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k, b = self.samples, x.shape[0]
        xm = x if self.measurement is None else torch.cat([x, self.measurement(x).to(x)])
        f = self.model(xm, **{self.noise.name: k})  # (k, B + M, ...)
        task = self.likelihood.nll(f[:, :b], y)
        fd = f.detach()
        grad = torch.zeros_like(fd)
        grad[:, :b] = self.likelihood.grad_log_lik(fd[:, :b], y)
        grad = grad.reshape(k, -1)
        drive, repulse = stein_direction(fd.reshape(k, -1), grad, self.alpha)
        flat = f.reshape(k, -1)
        scale = 1.0 / (k * b)
        # The surrogate's gradient in f_i is -(drive_i + repulse_i) / (k B); its value is not a loss.
        surrogate = -(flat * (drive + repulse)).sum() * scale
        div = -(fd.reshape(k, -1) * repulse).sum() * scale
        return surrogate, task.detach(), div
