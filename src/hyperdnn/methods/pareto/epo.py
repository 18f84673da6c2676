"""Exact Pareto Optimal search (EPO): the descent direction that reaches the preference ray.

EPO (Mahapatra & Rajan, ICML 2020) looks for the point of the Pareto front whose
losses satisfy ``r_1 l_1 = r_2 l_2 = ... = r_m l_m``. Each step weighs the losses by
``beta = m * alpha`` where ``alpha`` solves a small linear program on the simplex,
built from the losses, the preference and the Gram matrix ``C = G G^T`` of the
objectives' gradients ``G`` (``m x P``):

- the *non-uniformity* ``mu = KL(l_hat || 1/m)`` with ``l_hat = r*l / sum(r*l)`` and the
  *adjustment* ``a = r * (log(m l_hat) - mu)``;
- when ``mu > eps`` ("balance"): maximise ``alpha^T C a`` s.t. ``C alpha >= rhs``, where
  ``rhs_j = -inf`` for ``(C a)_j > 0`` except ``rhs_{j*} = 0`` at the largest ``r_j l_j``,
  and ``rhs_j = (C a)_j`` otherwise (all zeros if no ``(C a)_j`` is positive);
- otherwise ("descent"): maximise ``1^T C alpha`` s.t. ``C alpha >= 0`` and
  ``alpha^T C a >= min(max_j (C a)_j, 0)``.

The program is solved with ``scipy.optimize.linprog`` (HiGHS). PHN-EPO (Navon et al.,
ICLR 2021) applies this to the hypernetwork's parameters; when the program has no
solution the released code falls back to the normalised preference, and so does this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from hyperdnn.errors import ShapeError

__all__ = ["EPOSolution", "epo_loss", "epo_weights"]


@dataclass(frozen=True)
class EPOSolution:
    """The EPO step's weights and how they were found.

    Attributes:
        weights: ``beta = m * alpha``, ``(m,)`` float64 numpy array.
        mode: ``"balance"``, ``"descent"`` or ``"fallback"`` (no LP solution: ``m * r / sum(r)``).
        non_uniformity: ``mu``.
    """

    weights: np.ndarray
    mode: str
    non_uniformity: float


def epo_weights(losses: np.ndarray | Sequence[float], preference: np.ndarray | Sequence[float], gram: np.ndarray, eps: float = 1e-4) -> EPOSolution:
    """Solves EPO's linear program for the loss weights.

    Args:
        losses: ``(m,)`` positive loss values.
        preference: ``(m,)`` positive preference ``r``.
        gram: ``(m, m)`` Gram matrix of the objectives' gradients, ``C = G G^T``.
        eps: the non-uniformity under which the step only descends (EPO's default 1e-4).

    Returns:
        :class:`EPOSolution`; the step's loss is ``sum_i weights_i * l_i``.
    """
    from scipy.optimize import linprog  # the optional 'pareto' extra

    l = np.asarray(losses, dtype=np.float64)
    r = np.asarray(preference, dtype=np.float64)
    C = np.asarray(gram, dtype=np.float64)
    m = l.shape[0]
    if l.ndim != 1 or r.shape != (m,) or C.shape != (m, m):
        raise ShapeError(f"epo_weights: losses {l.shape}, preference {r.shape} and gram {C.shape} must be (m,), (m,), (m, m)")
    rl = r * l
    if np.any(rl <= 0):
        # log(m l_hat) needs every weighted loss positive; a zero loss has nothing left to balance.
        return EPOSolution(m * r / r.sum(), "fallback", float("nan"))
    l_hat = rl / rl.sum()
    mu = float(np.sum(l_hat * np.log(l_hat * m)))
    a = r * (np.log(l_hat * m) - mu)
    Ca = C @ a
    bounds = [(0.0, None)] * m
    a_eq, b_eq = np.ones((1, m)), np.array([1.0])
    if mu > eps:
        mode = "balance"
        positive = Ca > 0
        if positive.any():
            rhs = Ca.copy()
            rhs[positive] = -np.inf
            rhs[rl == rl.max()] = 0.0
        else:
            rhs = np.zeros(m)
        keep = np.isfinite(rhs)
        # C alpha >= rhs  <=>  -C alpha <= -rhs (rows with rhs = -inf constrain nothing)
        res = linprog(-Ca, A_ub=-C[keep], b_ub=-rhs[keep], A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    else:
        mode = "descent"
        a_ub = np.vstack([-C, -Ca[None, :]])
        b_ub = np.concatenate([np.zeros(m), [-min(Ca.max(), 0.0)]])
        res = linprog(-C.sum(axis=0), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.status != 0 or res.x is None:
        return EPOSolution(m * r / r.sum(), "fallback", mu)
    alpha = np.clip(res.x, 0.0, None)
    return EPOSolution(m * alpha / alpha.sum(), mode, mu)


def epo_loss(losses: Tensor, preference: Tensor, parameters: Sequence[Tensor], eps: float = 1e-4) -> tuple[Tensor, EPOSolution]:
    """PHN-EPO's loss: ``sum_i beta_i l_i`` with EPO's weights from the gradients w.r.t. ``parameters``.

    Args:
        losses: ``(m,)`` differentiable losses.
        preference: ``(m,)`` the preference ``r``.
        parameters: the trained tensors (for PHN: the hypernetwork's parameters).
        eps: see :func:`epo_weights`.

    Returns:
        The weighted loss (call ``.backward()`` on it) and the :class:`EPOSolution`.
    """
    if losses.dim() != 1 or preference.shape != losses.shape:
        raise ShapeError(f"epo_loss: losses {tuple(losses.shape)} and preference {tuple(preference.shape)} must both be (m,)")
    params = [p for p in parameters if p.requires_grad]
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]))
    G = torch.stack(rows).double()
    sol = epo_weights(losses.detach().double().cpu().numpy(), preference.detach().double().cpu().numpy(), (G @ G.T).cpu().numpy(), eps)
    beta = torch.as_tensor(sol.weights, dtype=losses.dtype, device=losses.device)
    return (losses * beta).sum(), sol
