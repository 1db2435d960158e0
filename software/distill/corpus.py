"""An offline English corpus of sentences, found on the machine (nothing is downloaded).

Two sources, both prose written for people:
  * the docstrings of the Python standard library of the running interpreter (sysconfig's
    "stdlib" folder, test suites and idlelib left out), parsed with `ast`, never imported;
  * the GNU info manuals in /usr/share/info (coreutils, grep, sed, gettext, ...), if present.
Paragraphs are split into sentences at ". ", "! " or "? " followed by a capital; a sentence is kept
if it has 6 to 40 words, starts with a capital, ends with . ! or ?, is at least 90% letters and
spaces, and holds none of the characters that mark code ({}[]<>=_#|\\@$`* and "()", "::", ">>>").
Duplicates are dropped. On this machine: ~8,700 + ~13,000 sentences.

The split is by a hash of the sentence (SHA-256), not by position: a sentence is held out iff its
hash falls in the first `held_out_fraction` of the range, so the held-out set never depends on which
other sentences exist, and training never sees it.
"""

import ast
import dataclasses
import gzip
import hashlib
import pathlib
import re
import sysconfig

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
CODE_MARKS = re.compile(r"[{}\[\]<>=_#|\\@$`*]|\(\)|::|>>>")
INFO_DIR = pathlib.Path("/usr/share/info")


def is_sentence(text):
    words = text.split()
    if not 6 <= len(words) <= 40 or not text[0].isupper() or text[-1] not in ".!?":
        return False
    if CODE_MARKS.search(text):
        return False
    return sum(c.isalpha() or c == " " for c in text) >= 0.9 * len(text)


def sentences_of(text):
    """The sentences of a block of prose, in order."""
    for paragraph in re.split(r"\n\s*\n", text):
        for candidate in SENTENCE_BREAK.split(" ".join(paragraph.split())):
            if candidate and is_sentence(candidate):
                yield candidate


def stdlib_docstrings(root=None):
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & {"test", "tests", "idlelib", "site-packages", "lib2to3"}:
            continue
        try:
            tree = ast.parse(path.read_text(errors="ignore"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def info_manuals(folder=INFO_DIR):
    for path in sorted(pathlib.Path(folder).glob("*.info*.gz")):
        with gzip.open(path, "rt", errors="ignore") as f:
            yield f.read()


@dataclasses.dataclass(frozen=True)
class Corpus:
    train: tuple
    held_out: tuple
    sources: tuple     # (name, sentences found) per source


def _hash_fraction(sentence):
    return int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:8], "big") / 2 ** 64


def load_corpus(held_out_fraction=0.06, *, stdlib_root=None, info_folder=INFO_DIR):
    """All sentences, split into training and held-out; each part sorted by hash (a fixed shuffle)."""
    seen, sources = set(), []
    for name, texts in (("python stdlib docstrings", stdlib_docstrings(stdlib_root)),
                        (f"GNU info manuals ({info_folder})", info_manuals(info_folder))):
        before = len(seen)
        for text in texts:
            seen.update(sentences_of(text))
        sources.append((name, len(seen) - before))
    ordered = sorted(seen, key=_hash_fraction)
    held = tuple(s for s in ordered if _hash_fraction(s) < held_out_fraction)
    train = tuple(s for s in ordered if _hash_fraction(s) >= held_out_fraction)
    return Corpus(train=train, held_out=held, sources=tuple(sources))
