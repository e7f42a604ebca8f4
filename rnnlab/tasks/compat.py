"""Checkpoints of earlier rnnlab versions: their meta, upgraded to the current layout.

The current meta of a checkpoint is ``{"task", "model_config", "vocabs": {name: vocab},
"data": {"source", ...}, "config": the task config}``. rnnlab 0.1.0 stored each task's
vocabularies under their own keys (``vocab``, ``labels``, ``tags``, ``src_vocab``, ...), the
recurrent layer's ``input_size`` inside the model config, the language model's recurrent options
flat in its model config, and no task config. Their weights are unchanged, so an upgraded meta
is all it takes to load them (tests/fixtures/v0_1_0 holds one checkpoint of every task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError

_LABELS = {"pad": None, "sos": None, "eos": None, "unk": None}


def _labels(tokens: Any) -> dict[str, Any]:
    return {"tokens": tokens, **_LABELS}


def _drop_input_size(rnn: Any) -> Any:
    if isinstance(rnn, dict):
        return {k: v for k, v in rnn.items() if k != "input_size"}
    return rnn


def _lm_model_config(old: dict[str, Any]) -> dict[str, Any]:
    """0.1.0's flat LMConfig -> the nested one; the same model: dropout between layers only when
    there are several, on the embedding and decoder ``io_dropout`` (``dropout`` when None)."""
    rnn_keys = ("cell", "hidden_size", "num_layers", "layer_norm", "forget_bias")
    rnn = {k: old[k] for k in rnn_keys if k in old}
    dropout = old.get("dropout", 0.0)
    rnn["dropout"] = dropout if old.get("num_layers", 1) > 1 else 0.0
    io = old.get("io_dropout")
    return {
        "vocab_size": old["vocab_size"],
        "embedding_size": old.get("embedding_size", 128),
        "rnn": rnn,
        "tie_weights": old.get("tie_weights", False),
        "io_dropout": dropout if io is None else io,
    }


def _upgrade_0_1(meta: dict[str, Any]) -> dict[str, Any]:
    task = meta.get("task")
    model = dict(meta["model_config"])
    data = dict(meta.get("data") or {})
    stored = {"source": data.pop("path", None), **data}
    vocabs: dict[str, Any]
    if task == "lm":
        model = _lm_model_config(model)
        vocabs = {"tokens": meta["vocab"]}
        stored["tokenizer"] = "words" if meta["vocab"].get("kind") == "word" else "chars"
        stored["seq_len"] = meta.get("seq_len")
    elif task == "classify":
        vocabs = {"tokens": meta["vocab"], "labels": _labels(meta["labels"])}
    elif task == "tag":
        vocabs = {"tokens": meta["vocab"], "tags": meta["tags"]}
        stored["scheme"] = meta.get("scheme", "conll")
    elif task == "seq2seq":
        vocabs = {"source": meta["src_vocab"], "target": meta["tgt_vocab"]}
        tokenizer = meta.get("tokenizer", "words")
        stored["tokenizer"] = "sentence" if tokenizer == "words" else tokenizer
    elif task == "names":
        vocabs = {"tokens": meta["vocab"], "languages": _labels(meta["languages"])}
    elif task == "caption":
        vocabs = {"tokens": meta["vocab"]}
    else:
        return meta
    for key in ("rnn", "encoder"):
        if key in model:
            model[key] = _drop_input_size(model[key])
    return {"task": task, "model_config": model, "vocabs": vocabs, "data": stored, "config": None}


def upgrade_meta(meta: Any, where: Path | str) -> dict[str, Any]:
    """``meta`` in the current layout (a checkpoint of rnnlab 0.1.0 is upgraded).

    Raises:
        RnnlabError: a meta that is not a dict with a task and a model config.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("model_config"), dict):
        raise RnnlabError(f"checkpoint {where} has no model config: not an rnnlab task checkpoint")
    if not isinstance(meta.get("task"), str):
        raise RnnlabError(f"checkpoint {where} does not say which task it is for")
    if "vocabs" in meta:
        return meta
    try:
        return _upgrade_0_1(meta)
    except (KeyError, TypeError, AttributeError) as exc:
        raise RnnlabError(
            f"checkpoint {where} looks like rnnlab 0.1.0's but its meta is incomplete ({exc})"
        ) from None


__all__ = ["upgrade_meta"]
