"""Datasets as tensors: image classification sets and character-level text corpora."""
from .registry import dataset_names, default_root, load_dataset, train_size
from .splits import batch_indices
from .text import text_batch
from .types import DataFormatError, DatasetUnavailable, ImageData, TextData

__all__ = [
    "DataFormatError", "DatasetUnavailable", "ImageData", "TextData",
    "batch_indices", "dataset_names", "default_root", "load_dataset", "text_batch", "train_size",
]
