"""Layers from the hypernetwork literature: HyperLSTM and hyper-conv (Ha et al. 2016)."""

from hyperdnn.layers.hyper_conv import conv_kernels, hyper_conv
from hyperdnn.layers.hyper_lstm import HyperLSTM, HyperLSTMCell
from hyperdnn.layers.layer_norm_lstm import LayerNormLSTM

__all__ = ["HyperLSTM", "HyperLSTMCell", "LayerNormLSTM", "conv_kernels", "hyper_conv"]
