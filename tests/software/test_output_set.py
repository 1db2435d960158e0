"""software/output_set.py: an output directory is replaced as a whole or not at all."""
import os
import stat

import pytest

from software.output_set import OutputError, directory_problem, output_problem, output_set


def _write(directory, **files):
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)


def _contents(directory):
    return {name: open(os.path.join(directory, name)).read() for name in sorted(os.listdir(directory))}


def test_a_finished_set_replaces_the_earlier_output_whole(tmp_path):
    out = tmp_path / "out"
    with output_set(out, marker="manifest.json") as staging:
        _write(staging, **{"manifest.json": "1", "a.v": "old", "stale.txt": "from the first run"})
    with output_set(out, marker="manifest.json") as staging:
        assert os.path.dirname(staging) == str(tmp_path)        # beside the target: one file system
        _write(staging, **{"manifest.json": "2", "a.v": "new"})
    assert _contents(out) == {"a.v": "new", "manifest.json": "2"}
    assert sorted(os.listdir(tmp_path)) == ["out"]              # no staging or set-aside directory left
    mode = stat.S_IMODE(os.stat(out).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask                               # an ordinary directory, not mkdtemp's 0700


def test_a_failure_while_writing_leaves_the_earlier_output(tmp_path):
    out = tmp_path / "out"
    with output_set(out, marker="manifest.json") as staging:
        _write(staging, **{"manifest.json": "1", "a.v": "old"})
    with pytest.raises(KeyboardInterrupt):
        with output_set(out, marker="manifest.json") as staging:
            _write(staging, **{"a.v": "half"})
            raise KeyboardInterrupt
    assert _contents(out) == {"a.v": "old", "manifest.json": "1"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_failure_leaves_nothing_where_there_was_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with output_set(tmp_path / "deep" / "out", marker="manifest.json"):
            raise RuntimeError("the tool failed")
    assert not (tmp_path / "deep" / "out").exists()
    assert os.listdir(tmp_path / "deep") == []


@pytest.mark.parametrize("setup, target, message", [
    (lambda t: (t / "f").write_text("x"), "f", "exists and is not a directory"),
    (lambda t: (t / "f").write_text("x"), "f/below", "is not a directory"),
    (lambda t: ((t / "d").mkdir(), (t / "d" / "mine.txt").write_text("x")), "d", "not an earlier build"),
    (lambda t: None, "/proc/sparsegen-out", "cannot write to /proc"),
])
def test_output_path_problems_are_one_line_and_touch_nothing(tmp_path, setup, target, message):
    setup(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    target = tmp_path / target
    assert message in output_problem(target, "manifest.json")
    with pytest.raises(OutputError, match=message) as info:
        with output_set(target, marker="manifest.json"):
            pytest.fail("the body must not run")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_an_empty_directory_or_an_earlier_output_may_be_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    assert output_problem(tmp_path / "empty", "manifest.json") is None
    assert directory_problem(tmp_path / "empty") is None
    assert "not a directory" in directory_problem(__file__)
