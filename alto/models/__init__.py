"""Models for the optimizer comparisons: MLP, small CNN, CIFAR ResNets, VGG-16-BN, tiny GPT."""
from .registry import build_model, count_parameters, model_names

__all__ = ["build_model", "count_parameters", "model_names"]
