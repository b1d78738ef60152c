"""SISA training (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021) and its ensemble artifact.

SISA is the exception that proves the unlearner contract (DESIGN.md): it does not unlearn from a
single model but from the artifact SISA *training* produced — :class:`SisaEnsemble`:

* **Sharded**: the training ids are split uniformly at random (seeded) into ``S`` disjoint shards;
  each shard into ``R`` disjoint slices (:func:`sisa_partition`; pass ``partition=`` to
  :func:`train_sisa` for a custom, e.g. request-aware, one).
* **Isolated**: one constituent model per shard, same architecture, own initialisation.
* **Sliced**: stage ``r`` of shard ``s`` trains on the *union* of slices ``0..r`` (cumulative, as
  the official ``fetchShardBatch(..., until=(r+1)*slice_size)``) for the official epoch schedule
  :func:`slice_epochs`, and the weights are checkpointed after every stage. ``checkpoints[s][r]``
  is the state *before* slice ``r`` (``[s][0]`` the initialisation, ``[s][R]`` the final weights).
* **Aggregated**: ``"vote"`` (majority vote of the shards' argmax, the paper's default) or
  ``"mean_softmax"`` (average of the shards' softmax) — see :func:`aggregate`.

Unlearning (:meth:`SisaEnsemble.unlearn_ids`, wrapped by the ``sisa`` unlearner) removes the ids
from their slices and, for each affected shard only, reloads the checkpoint saved *before* the
first affected slice and retrains the slices from there on the remaining ids. Because every stage
is one :func:`obliviate.train.fit` call with a fresh optimiser and a seed derived from
``(seed, shard, slice)``, the result is bit-for-bit the ensemble that SISA training from scratch on
the remaining ids (same partition minus the ids, same seed) would give on the same machine: SISA is
exact.

Deviations from the official code (``cleverhans-lab/machine-unlearning``), and why:

* Each slice stage is a separate ``fit`` with a fresh optimiser and its own LR schedule over that
  stage's epochs (official: one optimiser object carried across the slices of a training run but
  a fresh one after a restart). Ours makes a restart identical to training from scratch, which is
  what makes the exactness above hold bit-for-bit; the stored checkpoints are model weights only.
* The schedule is computed in exact integer arithmetic,
  ``⌊(r+1)·2e/(R+1)⌋ − ⌊r·2e/(R+1)⌋`` (the official ``avg_epochs_per_slice = 2R/(R+1)·e/R``
  evaluated in floats can round differently on exact boundaries). Note that the number of epochs
  *summed over the slices* is ``⌊2eR/(R+1)⌋``, not ``e``: what equals ``e`` (up to rounding) is the
  *cost* — samples × epochs / shard size — because early slices see only part of the shard.
* Slices are ``torch.tensor_split`` parts (sizes differ by at most one, the larger first); the
  official code gives the remainder to the last slice.
* Optimiser, LR schedule, batch size, augmentation, … are the given :class:`TrainConfig`
  (official example: plain SGD lr 1e-3, batch 16). ``max_steps`` caps each stage separately.
  ``early_stop_patience`` is refused: stages have no validation data in SISA.

The ensemble keeps its training tensors (``ensemble.data``: images, labels, ids) as a plain
attribute — not in the ``state_dict`` and not deep-copied (copies share them; they are never
modified in place) — because retraining a shard needs the images of its remaining ids. After
unlearning, the new ensemble's data no longer contain the forgotten samples. Saving writes them
only with ``include_data=True``; a loaded artifact without data gets them from ``dataset=`` in
:func:`load_sisa`, or from the unlearning task's retain set.
"""

from obliviate.unlearn.sisa.core import (
    AGGREGATIONS,
    DATA,
    FORMAT,
    META,
    VOTE_EPS,
    WEIGHTS,
    Aggregation,
    ModelSource,
    SisaData,
    aggregate,
    sisa_cost,
    sisa_partition,
    slice_epochs,
)
from obliviate.unlearn.sisa.ensemble import SisaEnsemble, load_sisa, save_sisa
from obliviate.unlearn.sisa.training import train_sisa, train_sisa_model

__all__ = [
    "AGGREGATIONS",
    "DATA",
    "FORMAT",
    "META",
    "VOTE_EPS",
    "WEIGHTS",
    "Aggregation",
    "ModelSource",
    "SisaData",
    "SisaEnsemble",
    "aggregate",
    "load_sisa",
    "save_sisa",
    "sisa_cost",
    "sisa_partition",
    "slice_epochs",
    "train_sisa",
    "train_sisa_model",
]
