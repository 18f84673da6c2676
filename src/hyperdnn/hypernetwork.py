"""The hypernetwork H(c; phi): conditioning -> body -> output strategy -> {name: tensor}."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .bodies import MLP
from .conditioning import Condition, InputModule, NoInput
from .config import BodyConfig, InputConfig, OutputConfig, require_config
from .errors import ConfigError
from .outputs import GenerateOnce
from .target import TargetSpec


class HyperNetwork(nn.Module):
    """Maps a condition to the target's generated weights.

    Args:
        spec: the generated parameters (names and shapes).
        inputs: an input config (``TaskEmbedding``, ``External``, ``DataEncoder``,
            ``Noise``, ``Concat``) or None for an unconditioned hypernetwork.
        outputs: an output-strategy config (default ``GenerateOnce()``).
        body: a body config (default ``MLP(hidden=(100, 100))``).
        initial: the target's initial generated tensors (for init statistics and
            the additive output's theta0).

    Attributes:
        inputs: the built input module.
        outputs: the built output module; ``outputs.body`` is the built body.
    """

    def __init__(self, spec: TargetSpec, inputs: Any = None, outputs: Any = None, body: Any = None,
                 initial: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        outputs = GenerateOnce() if outputs is None else outputs
        body = MLP() if body is None else body
        if inputs is not None:
            require_config("HyperDNN", "inputs", inputs, InputConfig)
        require_config("HyperDNN", "outputs", outputs, OutputConfig)
        require_config("HyperDNN", "body", body, BodyConfig)
        self.spec = spec
        self.inputs: InputModule = NoInput() if inputs is None else inputs.build()
        self.outputs = outputs.build(spec, self.inputs.dim, body, initial or {})
        if self.inputs.dim == 0 and not self.outputs.has_embeddings():
            raise ConfigError(
                f"HyperDNN: with inputs=None, {type(outputs).__name__} with a {type(body).__name__} body sees no input "
                "at all; give an input, or use ChunkWise/ComponentWise (which learn one embedding per component)"
            )
        self.outputs.calibrate(self.inputs.probe(16))

    @property
    def body(self) -> nn.Module:
        return self.outputs.body

    def condition(self, x: Any = None, **conditions: Any) -> Condition:
        """The condition embedding for a call (see ``HyperDNN.condition``)."""
        return self.inputs(x, conditions)

    def forward(self, z: Tensor) -> dict[str, Any]:
        """Weights from a condition embedding ``z`` of shape ``(dim,)`` or ``(G, dim)``:
        ``{name: Tensor | Factored}`` (see :mod:`hyperdnn.factored`)."""
        return self.outputs(z)
