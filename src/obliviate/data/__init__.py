"""Datasets (real, offline), splits with a reserve, and forget requests."""

from obliviate.data.dataset import ImageDataset
from obliviate.data.request import ForgetRequest
from obliviate.data.split import Split, make_split

__all__ = ["ImageDataset", "ForgetRequest", "Split", "make_split"]
