"""The offline corpus: sentence rules, sources and a held-out split that training never sees."""

import gzip

import pytest

from software.distill.corpus import is_sentence, load_corpus, sentences_of


def test_sentence_rules():
    assert is_sentence("The committee met on Tuesday to review the budget.")
    assert not is_sentence("Too short to count.")                       # fewer than 6 words
    assert not is_sentence("the lower case start is not a sentence here.")
    assert not is_sentence("Returns x[0] when the list is not empty.")   # code marks
    assert not is_sentence("This line has no final punctuation at all")
    assert not is_sentence("Call foo() and then bar() to reset the state.")


def test_paragraphs_split_into_sentences():
    text = "First sentence of this paragraph is here. Second one follows it right away!\n\nshort.\n"
    assert list(sentences_of(text)) == ["First sentence of this paragraph is here.",
                                        "Second one follows it right away!"]


def make_sources(tmp_path, count):
    stdlib = tmp_path / "lib"
    stdlib.mkdir()
    lines = [f"Sentence number {i} explains a small detail about the module." for i in range(count)]
    (stdlib / "mod.py").write_text('"""' + " ".join(lines) + '"""\n\ndef f():\n    """Returns x[0] quickly."""\n')
    (stdlib / "test").mkdir()
    (stdlib / "test" / "t.py").write_text('"""A test file sentence that must never be read by us."""\n')
    info = tmp_path / "info"
    info.mkdir()
    with gzip.open(info / "tool.info.gz", "wt") as f:
        f.write("The tool copies each file to the destination folder you name.\n\nFile: tool.info, Node: Top\n")
    return stdlib, info


def test_split_is_disjoint_deterministic_and_independent_of_the_rest(tmp_path):
    stdlib, info = make_sources(tmp_path, 400)
    corpus = load_corpus(0.2, stdlib_root=stdlib, info_folder=info)
    assert [c for _, c in corpus.sources] == [400, 1]
    everything = set(corpus.train) | set(corpus.held_out)
    assert len(everything) == 401 and not set(corpus.train) & set(corpus.held_out)
    assert "A test file sentence that must never be read by us." not in everything
    assert 40 < len(corpus.held_out) < 120
    again = load_corpus(0.2, stdlib_root=stdlib, info_folder=info)
    assert again == corpus
    # Held out by the sentence's own hash: fewer sources never move a sentence into training.
    smaller = load_corpus(0.2, stdlib_root=stdlib, info_folder=tmp_path / "nothing")
    assert set(smaller.held_out) <= set(corpus.held_out)


@pytest.mark.slow
def test_the_machine_has_enough_held_out_sentences():
    corpus = load_corpus()
    assert len(corpus.held_out) >= 1000 and len(corpus.train) >= 10 * len(corpus.held_out)
