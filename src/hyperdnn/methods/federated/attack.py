"""Gradient inversion: DLG and iDLG reconstruct a client's batch from what it shares, and the
image metrics (PSNR, SSIM) that score a reconstruction.

- DLG: Zhu, Liu and Han, "Deep Leakage from Gradients", NeurIPS 2019: optimise dummy
  inputs (and soft labels) with L-BFGS so that their gradient matches the shared one,
  ``min_x' || grad(x') - grad(x) ||^2``.
- iDLG: Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020: the true
  labels first, from the signs of the last layer's bias (or weight) gradient, then DLG with
  those labels fixed.

PSNR and SSIM come from torchmetrics (the ``uncertainty`` extra), imported when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["Reconstruction", "image_scores", "infer_labels", "invert_gradients"]


@dataclass(frozen=True)
class Reconstruction:
    """What an attack returns.

    Attributes:
        x: ``(B, ...)`` the reconstructed inputs (detached).
        labels: ``(B,)`` the labels used (given, inferred, or the argmax of the learned soft labels).
        distance: the final gradient-matching loss.
    """

    x: Tensor
    labels: Tensor
    distance: float


def infer_labels(last_bias_grad: Tensor, count: int) -> Tensor:
    """iDLG's label inference: with cross-entropy, ``dL/db_c = mean_i (p_ic - [y_i = c])`` is
    negative exactly for the classes present in the batch when each appears once and the
    predictions are not confident; the ``count`` most negative entries are the labels.

    Args:
        last_bias_grad: ``(C,)`` the shared gradient of the last layer's bias.
        count: the batch size ``B <= C`` (labels assumed distinct).

    Returns:
        ``(B,)`` int64 labels, ascending.
    """
    if last_bias_grad.dim() != 1 or not 1 <= count <= last_bias_grad.numel():
        raise ShapeError(f"infer_labels: need a (C,) bias gradient and 1 <= count <= C (got {tuple(last_bias_grad.shape)}, count={count})")
    return last_bias_grad.topk(count, largest=False).indices.sort().values


def invert_gradients(grad_fn: Callable[[Tensor, Tensor], Sequence[Tensor]], shared: Sequence[Tensor], shape: Sequence[int], *,
                     labels: Tensor | None = None, num_classes: int | None = None, steps: int = 100, lr: float = 1.0,
                     extra: Sequence[Tensor] = (), generator: torch.Generator | None = None,
                     line_search: str | None = None) -> Reconstruction:
    """DLG (``labels=None``: soft labels learned too) or iDLG (``labels`` given or inferred):
    L-BFGS on dummy inputs so that ``grad_fn(x', y')`` matches ``shared``.

    Args:
        grad_fn: ``(x (B, ...), y) -> gradients``, differentiable (built with ``create_graph=True``);
            ``y`` is ``(B,)`` int64 labels or ``(B, C)`` probabilities.
        shared: the gradients the client shared, in ``grad_fn``'s order.
        shape: ``(B, ...)`` of the dummy inputs.
        labels: known or inferred labels; None learns soft labels (needs ``num_classes``).
        num_classes: ``C`` for soft labels.
        steps: L-BFGS iterations (DLG: 300).
        lr: L-BFGS step size (DLG: 1).
        extra: further dummy tensors (leaf, ``requires_grad``) the attacker optimises with the
            inputs, e.g. guesses of a client's private parameters.
        generator: the random source of the dummy start (``N(0, 1)``).
        line_search: L-BFGS's line search (None: fixed steps of ``lr``, as DLG's code; on a
            linear model ``"strong_wolfe"`` stalled in a local minimum where None converged).

    Returns:
        :class:`Reconstruction`.
    """
    if labels is None and num_classes is None:
        raise ConfigError("invert_gradients: give labels (iDLG) or num_classes (DLG's soft labels)")
    x = torch.randn(tuple(shape), generator=generator).requires_grad_(True)
    soft = None if labels is not None else torch.randn(shape[0], int(num_classes), generator=generator).requires_grad_(True)
    params = [x] + ([soft] if soft is not None else []) + list(extra)
    opt = torch.optim.LBFGS(params, lr=lr, max_iter=steps, history_size=100, line_search_fn=line_search,
                            tolerance_grad=1e-12, tolerance_change=1e-14)
    targets = [g.detach() for g in shared]

    def distance() -> Tensor:
        y = labels if soft is None else F.softmax(soft, dim=-1)
        grads = grad_fn(x, y)
        if len(grads) != len(targets):
            raise ShapeError(f"invert_gradients: grad_fn gave {len(grads)} tensors; the shared gradients are {len(targets)}")
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, targets))

    def closure() -> Tensor:
        opt.zero_grad()
        d = distance()
        d.backward()
        return d

    opt.step(closure)
    final = float(distance().detach())
    found = labels if soft is None else soft.detach().argmax(-1)
    return Reconstruction(x.detach(), found.detach(), final)


def image_scores(x: Tensor, reference: Tensor, data_range: float | None = None) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM of each reconstruction against its original (torchmetrics).

    Args:
        x: ``(B, C, H, W)`` reconstructions; reference: ``(B, C, H, W)`` originals.
        data_range: the value range (None: the reference's max - min); reconstructions are
            clipped to ``[min(reference), min(reference) + data_range]`` first.

    Returns:
        ``(psnr, ssim)`` averaged over the batch.
    """
    if x.shape != reference.shape or x.dim() != 4:
        raise ShapeError(f"image_scores: need two (B, C, H, W) tensors of one shape (got {tuple(x.shape)} and {tuple(reference.shape)})")
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    rng = float(reference.max() - reference.min()) if data_range is None else data_range
    low = float(reference.min())
    xs, rs = x.detach().double().clamp(low, low + rng), reference.detach().double()  # as an image would be shown
    psnr = torch.stack([peak_signal_noise_ratio(a[None], b[None], data_range=rng) for a, b in zip(xs, rs)]).mean()
    ssim = structural_similarity_index_measure(xs, rs, data_range=rng)
    return float(psnr), float(ssim)
