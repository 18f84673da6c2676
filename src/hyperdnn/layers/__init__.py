"""Layers from the hypernetwork literature: HyperLSTM and hyper-conv (Ha et al. 2016)."""

from hyperdnn.layers.hyper_conv import conv_kernels, hyper_conv
from hyperdnn.layers.hyper_lstm import HyperLSTM, HyperLSTMCell

__all__ = ["HyperLSTM", "HyperLSTMCell", "conv_kernels", "hyper_conv"]
