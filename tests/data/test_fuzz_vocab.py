"""Property-based tests of vocabularies in checkpoint metas: ``Vocab.from_meta`` of any JSON
value gives a vocabulary that round-trips, or one line. ``RNNLAB_FUZZ_EXAMPLES`` raises the count.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError

FUZZ = settings(max_examples=int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", 200)), deadline=None)
TOKEN = st.text(max_size=4)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TOKEN),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TOKEN, inner, max_size=3)),
    max_leaves=10,
)
# metas shaped like a vocabulary, with wrong types and missing or duplicate tokens mixed in
METAS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"tokens": st.one_of(st.lists(TOKEN, max_size=6), JSON)},
        optional={
            k: st.one_of(TOKEN, st.none(), JSON) for k in ("pad", "sos", "eos", "unk", "kind")
        },
    ),
)


@FUZZ
@given(meta=METAS)
def test_any_vocab_meta_loads_or_fails_in_one_line(meta: object) -> None:
    try:
        vocab = Vocab.from_meta(meta)
    except Exception as exc:
        assert isinstance(exc, RnnlabError), repr(exc)
        assert str(exc) and "\n" not in str(exc), str(exc)
        return
    assert isinstance(meta, dict)
    assert vocab.itos == meta["tokens"] and len(set(vocab.itos)) == len(vocab)
    assert Vocab.from_meta(vocab.to_meta()) == vocab
    assert vocab.decode(
        vocab.encode([t for t in vocab.itos if t not in vocab.specials.values()]), stop_at_eos=False
    ) == [t for t in vocab.itos if t not in vocab.specials.values()]


def test_vocab_meta_error_is_one_line_whatever_it_holds() -> None:
    for meta in ["a\nb", {"tokens": "x\ny"}, {"tokens": ["a\n", "a\n"]}, {"tokens": [], "kind": 3}]:
        try:
            Vocab.from_meta(meta)
        except RnnlabError as exc:
            assert "\n" not in str(exc), str(exc)
        else:
            raise AssertionError(f"{meta!r} loaded")
