"""The any-width training method (NeuMeta, Yang & Wang 2024) as an object for the user's own loop.

Each step samples a width ``w`` from the training widths, makes the weights of
the target of that width with the implicit hypernetwork and minimises

    L = ce * CE(F_w(x; theta_w), y)
      + reg * sum_t ||theta_w,t||_2
      + recon(step) * [w == w_ref] * R(theta_w, theta_ref)
      + kd * T^2 * KL(softmax(F_ref(x) / T) || softmax(F_w(x; theta_w) / T))

with ``R`` NeuMeta's magnitude-weighted regression
``mean_t mean((theta - theta_ref)^2 * (|theta_ref| + eps) / max(|theta_ref| + eps))``
against the (permuted) reference network, which exists at the reference width
only. Sources (Adamdad/neumeta at 1a2f4a0): width sampling and the loss
``neumeta/train_mnist.py`` lines 53, 77-91; ``R``
``neumeta/utils/hypernet_utils.py`` lines 12-45; the weights ce 1, reg 1e-4,
recon 1, kd 0.1 ``neumeta/config/base_config.yaml`` lines 36-39; the recon
weight decays linearly over training (``train_mnist.py`` line 295 calls a
``linear_decay(epoch, 50, w0)`` the repository does not define: read here as
``w0 * (1 - step / recon_decay_steps)``, floored at 0). NeuMeta's MNIST script
computes no distillation term (``kd`` is in the base config only): it is an
option here, 0 by default.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError, HDTypeError

from .permute import Group, smooth_permutation


def weighted_reconstruction(theta: dict[str, Tensor], reference: dict[str, Tensor], eps: float = 1e-6,
                            standardize: bool = False) -> Tensor:
    """NeuMeta's reconstruction loss: squared error weighted by the reference's relative magnitude,
    averaged per tensor, then over tensors.

    Args:
        theta: generated ``{name: tensor}``.
        reference: ``{name: tensor}`` of the same shapes.
        standardize: divide each tensor's squared error by the reference tensor's variance
            (every layer then counts alike, whatever its scale; NeuMeta: False).
    """
    losses = []
    for name, ref in reference.items():
        weight = ref.abs() + eps
        weight = weight / weight.max()
        err = ((theta[name] - ref) ** 2 * weight).mean()
        if standardize and ref.numel() > 1:
            err = err / (ref.var() + eps)
        losses.append(err)
    return torch.stack(losses).mean()


class AnyWidth:
    """Trains an implicit HyperDNN so that it makes good weights for every width of a family.

    Args:
        model: a HyperDNN built with ``outputs=hd.Implicit(...)`` (all target parameters generated).
        make_target: ``width -> nn.Module``, the family (e.g. ``lambda w: LeNet(w)``).
        widths: the widths sampled in training.
        reference: the trained network at ``reference_width`` (not modified).
        reference_width: its width (default ``max(widths)``).
        permute: reorder the reference's hidden channels along a short Hamiltonian path
            first (NeuMeta's first device; see :mod:`.permute`); the function is unchanged.
        groups: channel groups for the permutation (default: a chain of Conv/Linear layers).
        ce, reg, recon, kd: the loss weights (see the module docstring).
        recon_decay_steps: steps over which the reconstruction weight falls linearly to 0
            (0: constant).
        standardize_recon: take the reconstruction error of each tensor relative to the
            reference tensor's variance (see :func:`weighted_reconstruction`).
        recon_every_step: add the reconstruction term at every step (the reference width's
            weights made besides the sampled width's), not only when the reference width is
            sampled (NeuMeta: only then).
        kd_temperature: the distillation temperature ``T``.
        generator: the random generator of the width sampling (for exact resumption).

    Example:
        >>> method = AnyWidth(model, LeNet, widths=range(8, 33, 2), reference=trained32)
        >>> for x, y in loader:
        ...     parts = method.step(x, y, optimizer)
        >>> method.evaluate(test_x, test_y, widths=range(8, 33))   # {width: accuracy}
    """

    def __init__(self, model: nn.Module, make_target: Callable[[int], nn.Module], widths: Sequence[int],
                 reference: nn.Module, *, reference_width: int | None = None, permute: bool = True,
                 groups: list[Group] | None = None, ce: float = 1.0, reg: float = 1e-4, recon: float = 1.0,
                 kd: float = 0.0, recon_decay_steps: int = 0, kd_temperature: float = 1.0,
                 standardize_recon: bool = False, recon_every_step: bool = False,
                 generator: torch.Generator | None = None) -> None:
        from hyperdnn.hyperdnn import HyperDNN

        if not isinstance(model, HyperDNN):
            raise HDTypeError(f"AnyWidth: model must be a HyperDNN (got {type(model).__name__})")
        widths = [int(w) for w in widths]
        if not widths or any(w <= 0 for w in widths):
            raise ConfigError(f"AnyWidth: widths must be positive ints (got {widths})")
        for name, value in (("ce", ce), ("reg", reg), ("recon", recon), ("kd", kd)):
            if value < 0:
                raise ConfigError(f"AnyWidth: the loss weight {name} must be >= 0 (got {value})")
        if recon_decay_steps < 0 or kd_temperature <= 0:
            raise ConfigError(f"AnyWidth: recon_decay_steps must be >= 0 and kd_temperature > 0 "
                              f"(got {recon_decay_steps}, {kd_temperature})")
        self.model, self.make_target, self.widths = model, make_target, widths
        self.reference_width = max(widths) if reference_width is None else int(reference_width)
        reference = smooth_permutation(reference, groups) if permute else reference
        self.reference = reference.eval().requires_grad_(False)
        self.reference_weights = {n: p.detach() for n, p in self.reference.named_parameters()}
        self.weights = {"ce": ce, "reg": reg, "recon": recon, "kd": kd}
        self.recon_decay_steps, self.kd_temperature = recon_decay_steps, kd_temperature
        self.standardize_recon, self.recon_every_step = standardize_recon, recon_every_step
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.steps = 0
        self._targets: dict[int, nn.Module] = {}

    def target(self, width: int) -> nn.Module:
        """The family member of ``width`` (built once; the model caches its preparation)."""
        if width not in self._targets:
            # a module's init draws from the global RNG; forked so that when a width is first met
            # (which moves on resumption) does not shift the coordinate noise drawn after it
            with torch.random.fork_rng(devices=[]):
                self._targets[width] = self.make_target(width)
        return self._targets[width]

    def sample_width(self) -> int:
        return self.widths[int(torch.randint(len(self.widths), (1,), generator=self.generator))]

    def recon_weight(self) -> float:
        w = self.weights["recon"]
        if self.recon_decay_steps:
            w *= max(0.0, 1.0 - self.steps / self.recon_decay_steps)
        return w

    def loss(self, x: Tensor, y: Tensor, width: int | None = None, **conditions: Any) -> tuple[Tensor, dict[str, float]]:
        """The training loss at ``width`` (sampled when None) and its parts as floats."""
        width = self.sample_width() if width is None else width
        target = self.target(width)
        theta = self.model.weights(target=target, **conditions)
        logits = self.model.run_target(x, theta, target=target)
        w = self.weights
        parts = {"width": float(width), "ce": F.cross_entropy(logits, y)}
        total = w["ce"] * parts["ce"]
        if w["reg"]:
            parts["reg"] = torch.stack([t.norm() for t in theta.values()]).sum()
            total = total + w["reg"] * parts["reg"]
        recon_w = self.recon_weight()
        if recon_w and (width == self.reference_width or self.recon_every_step):
            ref_theta = theta if width == self.reference_width else \
                self.model.weights(target=self.target(self.reference_width), **conditions)
            parts["recon"] = weighted_reconstruction(ref_theta, self.reference_weights, standardize=self.standardize_recon)
            total = total + recon_w * parts["recon"]
        if w["kd"]:
            t = self.kd_temperature
            with torch.no_grad():
                teacher = F.log_softmax(self.reference(x) / t, dim=-1)
            parts["kd"] = F.kl_div(F.log_softmax(logits / t, dim=-1), teacher, log_target=True, reduction="batchmean") * t * t
            total = total + w["kd"] * parts["kd"]
        return total, {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in parts.items()}

    def step(self, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer, **conditions: Any) -> dict[str, float]:
        """One optimizer step on :meth:`loss`; returns its parts (and ``loss``)."""
        optimizer.zero_grad(set_to_none=True)
        total, parts = self.loss(x, y, **conditions)
        total.backward()
        optimizer.step()
        self.steps += 1
        return {"loss": float(total.detach()), **parts}

    @torch.no_grad()
    def evaluate(self, images: Tensor, labels: Tensor, widths: Sequence[int] | None = None, batch: int = 1000,
                 **conditions: Any) -> dict[int, float]:
        """Test accuracy (in %) at each width, the weights made once per width, in eval mode."""
        was = self.model.training
        self.model.eval()
        result = {}
        try:
            for width in (self.widths if widths is None else widths):
                target = self.target(int(width))
                theta = self.model.weights(target=target, **conditions)
                correct = sum(int((self.model.run_target(images[i:i + batch], theta, target=target).argmax(-1)
                                   == labels[i:i + batch]).sum()) for i in range(0, len(images), batch))
                result[int(width)] = 100.0 * correct / len(images)
        finally:
            self.model.train(was)
        return result

    def state_dict(self) -> dict[str, Any]:
        """The method's own state (step count, sampling generator); the model and optimizer save theirs."""
        return {"steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.generator.set_state(state["generator"])
