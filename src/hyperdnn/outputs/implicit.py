"""Implicit outputs (NeuMeta, Yang & Wang 2024): each weight is a function of its coordinates.

Every *row* of a generated tensor (one output and one input index; all kernel
positions of a convolution at once, as in NeuMeta) has six coordinates

    u = [t / T, o / n_out, i / n_in, T / norm, n_out / norm, n_in / norm]

(``t`` the tensor's index among the ``T`` generated tensors, ``o``/``i`` the
output/input index, ``n_out``/``n_in`` the tensor's first two sizes; a bias has
``i = 0`` and ``n_in = 1``). They go through the Fourier-feature encoding

    gamma(u) = [u, sin(2^k pi u_j), cos(2^k pi u_j)]  for k < num_freqs, every j,

are concatenated with the condition ``z`` into one token per row, and a
token-wise body plus one linear head make ``kernel`` numbers per row; a smaller
kernel takes the centre ``kh * kw`` of them. The head's numbers are
standardised weights: ``scale="sqrt-fan-in"`` (default) multiplies a tensor by
``1 / sqrt(fan_in)`` of its layer (``n_in * kh * kw``; a bias by its layer's
weight's), the scale PyTorch's own init gives, so one head serves layers and
widths of very different fan-in; ``scale="n-in"`` is NeuMeta's ``1 / n_in`` on
weights only. So the weights of any target of the family come from the same
function: a wider network is a finer sampling of it.

All rows of a target are made in batched chunks of ``chunk_size`` rows (a loop
over chunks, never over weights or rows); without autograd they are written
into one preallocated buffer, so peak memory is the target's size plus one
chunk's activations.

Where each choice comes from (Adamdad/neumeta at 1a2f4a0):
coordinates ``neumeta/utils/hypernet_utils.py`` lines 230-258 (``sample_coordinates``)
and ``neumeta/hypermodel.py`` line 160 (``x[:, :3] / x[:, 3:]``); division of
all six by ``norm`` ``hypernet_utils.py`` line 303; Fourier features
``hypermodel.py`` lines 44-52 (``num_freqs: 16`` in
``neumeta/config/mnist/LeNet_mnist_8-32.yaml`` line 31); the kernel head of 25
numbers and its centre slice ``LeNet_mnist_8-32.yaml`` line 32 and
``hypernet_utils.py`` lines 320-326; the ``1 / n_in`` scale ``hypermodel.py``
line 167 (``scale="n-in"``); coordinate noise ``(U(0, 1) - 0.5) * coord_noise`` on the integer
indices ``neumeta/train_mnist.py`` line 62. Differences: NeuMeta trains one
residual MLP per tensor (``hypermodel.py`` lines 184-191); here one body and
head are shared by all tensors (the tensor index is a coordinate), so the
hypernetwork's size does not grow with the target's depth and a target of
another depth has coordinates too; the noise moves only the two index
coordinates (NeuMeta adds it to all six, layer index included); the default
scale is ``1 / sqrt(fan_in)`` with the head initialised so the weights start at
PyTorch's init scale at every width (NeuMeta's ``1 / n_in`` with PyTorch's
default head init starts them far smaller; neither made the any-width-mnist
hypernetwork learn within a few hundred steps, see docs/methods/any_width.md).

Paper: Yang & Wang, "Neural Metamorphosis", ECCV 2024 (arXiv:2410.11878).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..bodies import BodyModule
from ..config import OutputConfig, checked, choice, number, optional, positive_int
from ..dynamic_target import DynamicOutput
from ..errors import ConfigError, ShapeError
from ..init import hyperfan_in_
from ..target import TargetSpec
from .base import OutputModule, split_flat

COORDS = 6
SCALES = ("sqrt-fan-in", "n-in", "none")
ENCODINGS = ("fourier", "grid")


@dataclass
class Implicit(OutputConfig):
    """Weights as a function of their coordinates: one hypernetwork for targets of any width.

    Args:
        num_freqs: Fourier frequencies ``2^0 .. 2^(num_freqs-1)`` (times pi) per coordinate (NeuMeta: 16).
        chunk_size: rows made per batched chunk (> 0); bounds the activations' memory.
        coord_noise: width of the uniform noise added to the output and input indices
            while training (``model.train()``), in index units (NeuMeta: 1.0); 0 disables it.
        norm: the size scale of the three size coordinates; None: the largest size of the
            construction target's tensors (filled in by ``build``, so a saved model keeps it).
        kernel: numbers the head makes per row (the largest kernel, ``kh * kw``); None:
            the construction target's largest (filled in by ``build``).
        scale: ``"sqrt-fan-in"`` (default): a tensor times ``1 / sqrt(fan_in)`` of its layer;
            ``"n-in"``: NeuMeta's, a weight (not a bias) divided by its input size;
            ``"none"``: the head's numbers as they are.
        encoding: ``"fourier"`` (default): the Fourier features of the coordinates through the
            body and head (NeuMeta's design); ``"grid"``: no body, each tensor a grid initialised
            with the construction target's tensor and sampled at any width by bilinear
            interpolation, scaled by ``R_in / n_in`` (see :mod:`hyperdnn.outputs.implicit_grid`;
            takes no condition, serves the construction target's depth and kernels only;
            ``num_freqs``, ``norm``, ``kernel`` and ``scale`` do not apply).

    The body must be token-wise (``hd.MLP``): it sees one token per row.

    Example:
        >>> model = HyperDNN(LeNet(32), outputs=Implicit(), body=MLP(hidden=(256,) * 4))
        >>> y = model(x, target=LeNet(13))   # a width never built before
    """

    num_freqs: int = checked(positive_int, default=16)
    chunk_size: int = checked(positive_int, default=16384)
    coord_noise: float = checked(number(0.0), default=0.0)
    norm: float | None = checked(optional(number(0.0, low_open=True)), default=None)
    kernel: int | None = checked(optional(positive_int), default=None)
    scale: str = checked(choice(*SCALES), default="sqrt-fan-in")
    encoding: str = checked(choice(*ENCODINGS), default="fourier")
    any_target: ClassVar[bool] = True

    def check(self) -> None:
        if self.num_freqs > 30:
            raise ConfigError(f"Implicit: num_freqs must be an int in [1, 30] (got {self.num_freqs!r})")

    def build(self, spec: TargetSpec, cond_dim: int, body, initial) -> OutputModule:
        if self.encoding == "grid":
            if cond_dim:
                raise ConfigError(
                    f"Implicit(encoding='grid'): the grid is the whole function and takes no condition (got a condition "
                    f"of width {cond_dim} from the inputs); build the HyperDNN without inputs, or use encoding='fourier'"
                )
            from .implicit_grid import GridImplicitOutput

            return GridImplicitOutput(spec, initial, self.chunk_size, float(self.coord_noise))
        if body.mixes_tokens:
            raise ConfigError(
                f"Implicit: the body must treat tokens independently (one token per weight row); "
                f"got {type(body).__name__}, which mixes them: use body=hd.MLP(...)"
            )
        if self.norm is None:
            self.norm = float(max(max(_rows_of(p.shape)[:2]) for p in spec.params))
        if self.kernel is None:
            self.kernel = max(_rows_of(p.shape)[2] for p in spec.params)
        features = COORDS * (1 + 2 * self.num_freqs)
        return ImplicitOutput(spec, body.build(cond_dim + features), self.num_freqs, self.chunk_size,
                              float(self.coord_noise), float(self.norm), self.kernel, self.scale)


def tensor_scales(spec: TargetSpec, scale: str) -> list[float]:
    """The factor each generated tensor's head numbers are multiplied by (see ``Implicit.scale``)."""
    if scale == "none":
        return [1.0] * len(spec.params)
    if scale == "n-in":
        return [1.0 / p.shape[1] if len(p.shape) >= 2 else 1.0 for p in spec.params]
    shapes = {p.name: p.shape for p in spec.params}
    out = []
    for p in spec.params:
        shape = p.shape
        if len(shape) < 2:  # a bias takes its layer's weight's fan-in (PyTorch's bias init does too)
            owner = p.name.rpartition(".")[0]
            sibling = shapes.get(f"{owner}.weight" if owner else "weight", ())
            shape = sibling if len(sibling) >= 2 else ()
        out.append(1.0 / math.sqrt(math.prod(shape[1:])) if len(shape) >= 2 else 1.0)
    return out


def _rows_of(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(n_out, n_in, kernel numbers per row)`` of a tensor shape."""
    if len(shape) == 0:
        return 1, 1, 1
    if len(shape) == 1:
        return shape[0], 1, 1
    return shape[0], shape[1], math.prod(shape[2:])


class ImplicitOutput(OutputModule, DynamicOutput):
    """Built implicit strategy: ``generate(z, spec)`` for any spec of the family; ``forward(z)``
    for the construction target's spec."""

    def __init__(self, spec: TargetSpec, body: BodyModule, num_freqs: int, chunk_size: int, coord_noise: float,
                 norm: float, kernel: int, scale: str) -> None:
        super().__init__()
        self.spec, self.body = spec, body
        self.chunk_size, self.coord_noise, self.norm, self.kernel = chunk_size, coord_noise, norm, kernel
        self.scale = scale
        self.head = nn.Linear(body.out_features, kernel)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False)

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        return self.generate(z, self.spec)

    def encode(self, t: int, n_tensors: int, o: Tensor, i: Tensor, n_out: int, n_in: int) -> Tensor:
        """Fourier features of the rows ``(o, i)`` of tensor ``t``: ``(n, 6 * (1 + 2 * num_freqs))``."""
        dtype = self.head.weight.dtype
        o, i = o.to(dtype), i.to(dtype)
        if self.training and self.coord_noise > 0:
            o = o + (torch.rand_like(o) - 0.5) * self.coord_noise
            i = i + (torch.rand_like(i) - 0.5) * self.coord_noise
        n = o.shape[0]
        u = torch.empty(n, COORDS, dtype=dtype, device=o.device)  # (n, 6)
        u[:, 0] = t / n_tensors
        u[:, 1] = o / n_out
        u[:, 2] = i / n_in
        u[:, 3], u[:, 4], u[:, 5] = n_tensors / self.norm, n_out / self.norm, n_in / self.norm
        angles = (u.unsqueeze(-1) * self.freqs.to(dtype)).flatten(-2)  # (n, 6 * F)
        return torch.cat([u, angles.sin(), angles.cos()], dim=-1)  # (n, 6 * (1 + 2F))

    def generate(self, z: Tensor, spec: TargetSpec) -> dict[str, Tensor]:
        """``{name: tensor}`` for every tensor of ``spec`` from the condition ``z`` (``(d,)`` or ``(G, d)``)."""
        self.check_family(spec, None)
        lead = tuple(z.shape[:-1])
        device, dtype = self.head.weight.device, self.head.weight.dtype
        track = torch.is_grad_enabled() and (z.requires_grad or self.head.weight.requires_grad)
        out = None if track else torch.empty(*lead, spec.numel, device=device, dtype=dtype)  # (..., P)
        pieces: list[Tensor] = []
        offset, n_tensors = 0, len(spec.params)
        for t, (p, scale) in enumerate(zip(spec.params, tensor_scales(spec, self.scale))):
            n_out, n_in, kk = _rows_of(p.shape)
            start = self.kernel // 2 - kk // 2
            rows = n_out * n_in
            for a in range(0, rows, self.chunk_size):
                n = min(self.chunk_size, rows - a)
                r = torch.arange(a, a + n, device=device)
                enc = self.encode(t, n_tensors, torch.div(r, n_in, rounding_mode="floor"), r % n_in, n_out, n_in)
                if z.shape[-1]:
                    tokens = torch.cat([z.unsqueeze(-2).expand(*lead, n, z.shape[-1]).to(dtype),
                                        enc.expand(*lead, *enc.shape)], dim=-1)  # (..., n, d + E)
                else:  # no condition: the coordinates are the whole token
                    tokens = enc.expand(*lead, *enc.shape)  # (..., n, E)
                w = self.head(self.body(tokens))[..., start:start + kk]  # (..., n, kk)
                if scale != 1.0:
                    w = w * scale
                if track:
                    pieces.append(w.flatten(-2))
                else:
                    out[..., offset:offset + n * kk] = w.flatten(-2)
                offset += n * kk
        flat = torch.cat(pieces, dim=-1) if track else out  # (..., P)
        return split_flat(flat, spec)

    def check_family(self, spec: TargetSpec, kinds: dict[str, str] | None) -> None:
        """Raises when a tensor of ``spec`` has more kernel numbers per row than the head makes."""
        for p in spec.params:
            kk = _rows_of(p.shape)[2]
            if kk > self.kernel:
                where = f" (module {kinds[p.name]})" if kinds else ""
                raise ShapeError(
                    f"Implicit: target parameter {p.name!r}{where} of shape {p.shape} has {kk} kernel numbers per row; "
                    f"this hypernetwork's head makes {self.kernel} (build it with Implicit(kernel={kk}) or larger)"
                )

    def has_embeddings(self) -> bool:
        return True  # the coordinates tell the rows apart, so no condition is needed

    @torch.no_grad()
    def calibrate(self, probe: Tensor) -> None:
        """Initialises the head so its numbers start with std ``1 / sqrt(3)`` and mean 0 on the
        construction target's rows: times ``1 / sqrt(fan_in)`` that is PyTorch's own init scale
        (kaiming-uniform with ``a = sqrt(5)``). With ``scale="n-in"`` PyTorch's default head init
        is kept, as in NeuMeta (``hypermodel.py`` line 191)."""
        if self.scale == "n-in":
            return None
        feats = []
        budget = 4096
        for t, p in enumerate(self.spec.params):
            n_out, n_in, _ = _rows_of(p.shape)
            r = torch.arange(min(n_out * n_in, max(1, budget // len(self.spec.params))), device=self.head.weight.device)
            enc = self.encode(t, len(self.spec.params), torch.div(r, n_in, rounding_mode="floor"), r % n_in, n_out, n_in)
            z = probe[:4].to(enc)  # (S, d)
            tokens = torch.cat([z.unsqueeze(-2).expand(z.shape[0], *enc.shape[:1], z.shape[-1]),
                                enc.expand(z.shape[0], *enc.shape)], dim=-1) if z.shape[-1] else enc
            feats.append(self.body(tokens).reshape(-1, self.body.out_features))
        hyperfan_in_(self.head, torch.cat(feats), 1.0 / math.sqrt(3.0), 0.0)

    def zero_(self) -> None:
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
