"""Gaussian-process surrogates, one per objective, with gpytorch.

Each objective gets an exact GP with a constant mean and a scaled Matern-5/2 kernel
with one length scale per input (as in the SVH-PSL and PSL-MOBO code), its
hyperparameters fitted by maximising the marginal likelihood with Adam. Outputs are
standardised per objective before fitting; predictions are returned on the original
scale and are differentiable w.r.t. the inputs (the Pareto-set model trains through them).
"""

from __future__ import annotations


import torch
from torch import Tensor

from hyperdnn.errors import ConfigError, ShapeError

__all__ = ["GPSurrogate"]


class GPSurrogate:
    """Independent GPs ``f_k(x)`` for ``k = 1..m`` fitted to evaluated points.

    Args:
        x: ``(n, d)`` evaluated decisions (in the unit box).
        y: ``(n, m)`` their objective values.
        steps: Adam steps on the marginal log-likelihood per objective.
        lr: Adam's learning rate.
        standardize: fit on outputs standardised per objective (returned on the original scale);
            False fits the raw outputs, as the SVH-PSL code does on ZDT (gpytorch's initial
            hyperparameters then meet objectives of another scale, and Adam ends elsewhere).
        noise_floor: the smallest likelihood noise (the SVH-PSL code's ``GP_Model``: 1e-5).
    """

    def __init__(self, x: Tensor, y: Tensor, *, steps: int = 100, lr: float = 0.1, standardize: bool = True,
                 noise_floor: float = 1e-6) -> None:
        import gpytorch  # the optional 'pareto' extra

        if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
            raise ShapeError(f"GPSurrogate: x {tuple(x.shape)} and y {tuple(y.shape)} must be (n, d) and (n, m)")
        x = x.detach().double()
        y = y.detach().double()
        self.mean = y.mean(dim=0) if standardize else torch.zeros_like(y[0])
        self.scale = y.std(dim=0).clamp_min(1e-9) if standardize else torch.ones_like(y[0])
        ys = (y - self.mean) / self.scale
        self.models: list = []
        for k in range(y.shape[1]):
            likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.GreaterThan(noise_floor))
            model = _ExactGP(x, ys[:, k], likelihood, x.shape[1]).double()
            model.train()
            likelihood.train()
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
            for _ in range(steps):
                opt.zero_grad()
                loss = -mll(model(x), ys[:, k])
                loss.backward()
                opt.step()
            model.eval()
            likelihood.eval()
            self.models.append(model)

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and standard deviation of the latent functions at ``x`` ``(q, d)``: two ``(q, m)`` tensors."""
        import gpytorch

        x = x.double()
        means, stds = [], []
        with gpytorch.settings.fast_pred_var():
            for model in self.models:
                post = model(x)
                means.append(post.mean)
                stds.append(post.variance.clamp_min(1e-12).sqrt())
        mean = torch.stack(means, dim=1) * self.scale + self.mean
        std = torch.stack(stds, dim=1) * self.scale
        return mean, std

    def lower_confidence_bound(self, x: Tensor, beta: float = 0.1, uncertainty: str = "std") -> Tensor:
        """``mean - beta * std`` at ``x`` ``(q, d)`` -> ``(q, m)`` (SVH-PSL's ``coef_lcb = 0.1``).

        ``uncertainty="variance"`` gives ``mean - beta * std^2``, what the SVH-PSL code computes
        (its ``GP_Model.variance`` returns the posterior variance, which ``run_svh.py`` uses as the std).
        """
        if uncertainty not in ("std", "variance"):
            raise ConfigError(f"GPSurrogate.lower_confidence_bound: uncertainty must be 'std' or 'variance' (got {uncertainty!r})")
        mean, std = self.predict(x)
        return mean - beta * (std if uncertainty == "std" else std * std)


def _ExactGP(x: Tensor, y: Tensor, likelihood, dims: int):
    import gpytorch

    class Model(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=dims))

        def forward(self, inp: Tensor):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inp), self.covar_module(inp))

    return Model()
