"""rnnlab's own error types: bad input from a user, reported by the CLI as one line.

Every one is a :class:`RnnlabError` (hence a ``ValueError``), so that the CLI prints it as one
line and ``except ValueError`` catches it. Where ``torch.nn`` raises another built-in for the
same mistake, the error is that built-in too, so that code written against ``torch.nn`` (and
PyTorch's own tests of its recurrent modules) sees the type it expects:

* :class:`ShapeError`: an input or state whose shape does not fit the layer (``RuntimeError``
  in ``torch.nn.LSTM``);
* :class:`WrongTypeError`: an argument of the wrong type, e.g. ``batch_first="False"``
  (``TypeError`` in ``torch.nn``).
"""

from __future__ import annotations


class RnnlabError(ValueError):
    """A user-facing error: bad input, a missing or corrupted file, an impossible option.

    A subclass of ``ValueError`` so that library callers can catch either.
    """


class ShapeError(RnnlabError, RuntimeError):
    """An input or state whose shape (or structure) does not fit the layer.

    Also a ``RuntimeError``, the type ``torch.nn``'s recurrent modules raise for it.
    """


class WrongTypeError(RnnlabError, TypeError):
    """An argument of the wrong type (``hidden_size=2.5``, ``bias=1``, ``batch_first="False"``).

    Also a ``TypeError``, the type ``torch.nn``'s recurrent modules raise for it.
    """


__all__ = ["RnnlabError", "ShapeError", "WrongTypeError"]
