"""Static hypernetwork for CNNs (Ha et al. 2016, section 3.1): conv kernels made from tile embeddings.

A preset, not a new mechanism: it composes the core's component-wise output
(:class:`hyperdnn.outputs.component_wise.ComponentWise`) with the identity
body ``MLP(hidden=())`` and no condition, which is the paper's formulation.
Every selected kernel ``(out, in, kh, kw)`` is cut into ``(t_out, t_in)``
tiles; tile j has a learned embedding z_j (N_z) and a two-layer linear
generator, shared by all tiles of the same shape (so across layers), makes it:

    a_i = W_in^(i) z_j + b_in^(i)        i = 1 .. t_in       (a_i of size d)
    K_j[:, i] = W_out a_i + b_out        (t_out * kh * kw numbers)

For the paper's MNIST net (a 7x7, 16->16 kernel, N_z = d = 4) this is
4 * 64 + 64 + 4 * 784 + 784 = 4,240 generator parameters plus one 4-number
embedding, instead of 12,544 kernel weights.

Paper: Ha, Dai, Le 2016, "HyperNetworks", arXiv 1609.09106, section 3.1.
"""

from __future__ import annotations

from torch import nn

from hyperdnn.bodies import MLP
from hyperdnn.errors import ConfigError, HDTypeError
from hyperdnn.hyperdnn import HyperDNN
from hyperdnn.outputs.component_wise import ComponentWise
from hyperdnn.selection import Selector

__all__ = ["conv_kernels", "hyper_conv"]


def conv_kernels(target: nn.Module) -> list[str]:
    """Names of the ``weight`` of every nn.Conv1d/2d/3d in ``target`` (biases excluded), in module order."""
    names = []
    for mod_name, mod in target.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.weight is not None:
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


def hyper_conv(
    target: nn.Module,
    tile: tuple[int, int] = (16, 16),
    embedding_dim: int = 4,
    inner_dim: int | None = None,
    generate: Selector = None,
) -> HyperDNN:
    """Wrap a CNN so that its conv kernels are generated as in Ha et al.'s static hypernetwork.

    Args:
        target (nn.Module): any module holding conv layers; not modified.
        tile (tuple[int, int], default (16, 16)): (t_out, t_in), the basic kernel tile;
            a kernel of (out, in, kh, kw) takes ceil(out/t_out) * ceil(in/t_in) tiles
            (edges trimmed when the channels are not multiples; smaller kernels use
            their own sizes).
        embedding_dim (int, default 4): N_z, the size of each tile's embedding.
        inner_dim (int | None, default None): d, the width of the per-input-channel
            vectors a_i (None: embedding_dim, as in the paper).
        generate (Selector, default None): which parameters are generated; None picks
            every conv kernel (``conv_kernels(target)``), e.g. ``"conv2.weight"`` picks one.

    Returns:
        HyperDNN: call ``model(x)``; ``model.weights()`` gives the generated kernels
        ``{name: (out, in, kh, kw)}``; the rest of the target stays ordinary parameters.

    Raises:
        ConfigError: the target has no conv layer (and ``generate`` is None).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.Conv2d(16, 16, 7, padding=3))
        >>> model = hyper_conv(net, generate="2.weight")
        >>> model.weights()["2.weight"].shape
        torch.Size([16, 16, 7, 7])
    """
    if not isinstance(target, nn.Module):
        raise HDTypeError(f"hyper_conv: target must be an nn.Module (got {type(target).__name__})")
    if (
        not isinstance(tile, (tuple, list))
        or len(tile) != 2
        or any(isinstance(t, bool) or not isinstance(t, int) for t in tile)
    ):
        raise HDTypeError(f"hyper_conv: tile must be a pair of ints (t_out, t_in), e.g. (16, 16) (got {tile!r})")
    if min(tile) <= 0:
        raise ConfigError(f"hyper_conv: tile sizes must be > 0 (got {tuple(tile)})")
    if generate is None:
        generate = conv_kernels(target)
        if not generate:
            raise ConfigError(
                f"hyper_conv: the target ({type(target).__name__}) holds no Conv1d/2d/3d layer; "
                f"pass generate=... to pick the parameters to generate"
            )
    return HyperDNN(
        target,
        inputs=None,
        outputs=ComponentWise(tile=(tile[0], tile[1]), embedding_dim=embedding_dim, inner_dim=inner_dim),
        body=MLP(hidden=()),
        generate=generate,
    )
