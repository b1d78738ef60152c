"""Datasets (real, offline), splits with a reserve, and forget requests."""

from obliviate.data.dataset import ImageDataset
from obliviate.data.loaders import (
    DATASETS,
    DatasetInfo,
    clear_dataset_cache,
    list_datasets,
    load_dataset,
    register_dataset,
)
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split, make_split

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ForgetRequest",
    "ImageDataset",
    "Split",
    "clear_dataset_cache",
    "list_datasets",
    "load_dataset",
    "make_split",
    "register_dataset",
]
