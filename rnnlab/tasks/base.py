"""The task protocol: what one kind of model (language model, classifier, ...) declares so that
one generic runner trains it and one generic loader reads it back.

A task is one object beside its model. It declares its config (a :class:`~rnnlab.config.Config`
with the data options, its model's config as ``model``, which nests the recurrent layer's
:class:`~rnnlab.core.registry.RecurrentConfig` as ``rnn``, and the trainer's
:class:`~rnnlab.train.config.TrainConfig` as ``train``), how to read and split its
data into a :class:`TaskData` (with its vocabularies), how to batch, how to build its model,
how to evaluate and report on the test split, and its "use" commands (``rnnlab sample``,
``rnnlab predict``, ...), each with its own options config and a method of the same name.
Everything else (flags, ``--config`` files, the run directory, the trainer, checkpoints, loading)
is generic: :mod:`rnnlab.tasks.runner`.

Task modules import only torch-free modules at the top (so that ``rnnlab --help`` stays fast)
and import their model and torch inside the methods that run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from rnnlab.config import Config
from rnnlab.data.vocab import Vocab

if TYPE_CHECKING:
    from torch import Tensor, nn

    from rnnlab.tasks.runner import Run


class Batches(Protocol):
    """The trainer's batches: ``batches(epoch)`` iterates over epoch ``epoch``'s batches (the same
    for the same epoch, so that a resumed run sees the same data); ``len(batches)`` counts them."""

    def __call__(self, epoch: int) -> Iterable[Any]: ...

    def __len__(self) -> int: ...


@dataclass
class TaskData:
    """A task's data for one run: its splits, vocabularies and provenance.

    Attributes:
        train, val, test: the splits (lists of examples; the language model keeps token ids).
        vocabs: every vocabulary the model needs, by name (``"tokens"``, ``"labels"``, ...);
            stored in checkpoints.
        source: where the data came from (a resolved path or ``"bundled:NAME"``).
        summary: one line saying what is trained on, for the run's first line.
        provenance: what the "use" commands need to know about the data, stored in checkpoints
            with ``source`` (a tokenizer's name, a tagging scheme, a validation fraction).
        extra: anything else the task's methods share during training (class weights, ...).
        unit: what one token is in this run, for messages (default: the task's ``unit``).
    """

    train: Sequence[Any]
    val: Sequence[Any]
    test: Sequence[Any] = ()
    vocabs: dict[str, Vocab] = field(default_factory=dict)
    source: str = ""
    summary: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    unit: str | None = None


@dataclass
class Report:
    """What :meth:`Task.test` returns: metrics for ``test_metrics.json`` and lines to print."""

    metrics: dict[str, float | int | str]
    lines: list[str] = field(default_factory=list)


class Task:
    """Base class of every task; see the module docstring. Subclasses set the class attributes
    and implement the methods that raise ``NotImplementedError``."""

    #: the name in ``rnnlab train NAME`` and in checkpoints.
    name: ClassVar[str]
    #: one line for ``rnnlab train --help``.
    help: ClassVar[str]
    #: the task's config class: data options, its model's config as ``model`` (which holds the
    #: recurrent layer's as ``rnn``) and the trainer's as ``train``.
    config: ClassVar[type[Config]]
    #: "use" commands: ``rnnlab NAME CKPT ...`` -> its options; runs ``self.<name>(run, options)``
    #: (dashes as underscores). Each options config has a positional ``checkpoint`` field.
    commands: ClassVar[Mapping[str, type[Config]]] = {}
    #: ``rnnlab data NAME`` converters -> their options; runs ``self.<name>(options)``.
    converters: ClassVar[Mapping[str, type[Config]]] = {}
    #: what one token is, for messages (``chars``, ``words``, ``tokens``).
    unit: ClassVar[str] = "tokens"
    #: the model's class, ``"module:Class"`` (imported when a model is built), and its config.
    model_class: ClassVar[str]
    model_config: ClassVar[type[Config]]

    # -- training ---------------------------------------------------------------------------
    def load(self, config: Any) -> TaskData:
        """Read and split the data and build the vocabularies."""
        raise NotImplementedError

    def build_model(self, config: Any, data: TaskData) -> nn.Module:
        """The model for ``config``, sized by the data (vocabularies), on the CPU."""
        raise NotImplementedError

    def new_model(self, model_config: Config) -> nn.Module:
        """An instance of :attr:`model_class` built from ``model_config``."""
        module, _, name = self.model_class.partition(":")
        return getattr(importlib.import_module(module), name)(model_config)

    def model_from_meta(self, model_config: dict[str, Any]) -> nn.Module:
        """Rebuild the model from its stored ``model_config`` (weights not loaded)."""
        return self.new_model(self.model_config.from_meta(model_config, "model_config"))

    def collate(self, data: TaskData) -> Callable[[list[Any]], tuple]:
        """Examples -> the model's inputs and targets (tensors), for the default batches."""
        raise NotImplementedError

    def batches(self, config: Any, data: TaskData) -> Batches:
        """The training batches (see :class:`Batches`). Default: the training examples,
        shuffled every epoch by the trainer's seed, in batches of its batch size, collated by
        :meth:`collate`."""
        from rnnlab.data.batching import Batches as Shuffled

        return Shuffled(data.train, config.train.batch_size, self.collate(data), config.train.seed)

    def tokens(self, batch: tuple) -> int:
        """How many tokens a batch's mean loss averages over (default: its examples)."""
        return int(batch[0].shape[0])

    def loss_fn(
        self, config: Any, data: TaskData
    ) -> Callable[[nn.Module, Any], tuple[Tensor, int]]:
        """The trainer's ``loss_fn(model, batch) -> (loss, tokens)``; a new one per run (it may
        carry state across batches). Default: ``model(*batch)[1]`` and :meth:`tokens`."""

        def loss(model: nn.Module, batch: tuple) -> tuple[Tensor, int]:
            _, value = model(*batch)
            return value, self.tokens(batch)

        return loss

    def evaluate(self, model: nn.Module, data: TaskData, config: Any) -> dict[str, float]:
        """Validation metrics, ``val_loss`` first (called in eval mode, without gradients)."""
        raise NotImplementedError

    def test(self, run: Run, data: TaskData, config: Any) -> Report | None:
        """Score the trained model (the best checkpoint) on the test split; None: no test."""
        return None

    def adjust(self, config: Any, explicit: frozenset[str]) -> Any:
        """Defaults that depend on other options (``explicit``: the dotted names the user set).
        Default: ``config`` unchanged."""
        return config

    def describe(self, config: Any, data: TaskData) -> str:
        """What is trained, for the run's first line."""
        what = data.summary or data.source
        return f"a {config.model.rnn.describe()} {self.name} model on {what}"

    # -- analysis ---------------------------------------------------------------------------
    def diagnostic_batch(
        self, run: Run, data: str | None, length: int, batch: int
    ) -> tuple[Callable[[], Any], Callable[[], Tensor], str] | None:
        """For ``rnnlab diagnose``: ``(run_model, loss_at_last_step, description)`` closures over
        one batch of this task's data; None if the task has no diagnostics."""
        return None

    # -- helpers for subclasses -------------------------------------------------------------
    @staticmethod
    def out_dir(run: Run) -> Path:
        """The run directory of a loaded checkpoint (its ``best/`` or ``last/`` parent)."""
        path = Path(run.checkpoint.path)
        return path.parent if path.name in ("best", "last") else path


__all__ = ["Batches", "Report", "Task", "TaskData"]
