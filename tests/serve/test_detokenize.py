"""Streaming text: the pieces the server sends join to exactly the whole decoded text."""

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
pytest.importorskip("transformers", reason="tokenizers come from transformers")

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from specgrove.executor.loading import DEMO_DIR
from specgrove.serve.app import _Detokenizer

TOKENIZER = AutoTokenizer.from_pretrained(DEMO_DIR / "target")
CODE = TOKENIZER("def f(x):\n    return 'héllo wörld' + str(x)  # ünïcode ✓\n")["input_ids"]


@settings(max_examples=150, deadline=None)
@given(ids=st.one_of(st.lists(st.integers(0, len(TOKENIZER) - 1), min_size=1, max_size=40),
                     st.just(CODE)),
       cuts=st.lists(st.integers(1, 5), min_size=1, max_size=40))
def test_pieces_join_to_the_whole(ids, cuts):
    detok, pieces, at = _Detokenizer(TOKENIZER), [], 0
    for n in cuts * 10:
        if at >= len(ids):
            break
        pieces.append(detok.add(ids[at : at + n]))
        at += n
    pieces.append(detok.add(ids[at:]) if at < len(ids) else "")
    pieces.append(detok.flush())
    assert "".join(pieces) == TOKENIZER.decode(ids)
