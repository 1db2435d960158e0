"""The bad-input corpus (tests/reliability/corpus.py): every command refuses each case with one
line on stderr and exit status 2, and writes or changes nothing. In-process through each command's
main(argv); a few as real processes, for the exit status a shell sees."""
import pytest

from tests.reliability import corpus
from tests.reliability.crafted import make_packed


@pytest.fixture(scope="module")
def valid_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "model.npz"
    make_packed(path)
    return path


def _check(run, case, tmp_path, valid_model, record_property):
    workspace = corpus.Workspace(tmp_path / "ws", valid_model)
    before = workspace.snapshot()
    status, stderr = run(case, workspace)
    record_property("command", case.command)
    assert not corpus.problems(status, stderr), (corpus.problems(status, stderr), stderr[-2000:])
    assert workspace.snapshot() == before, "the command wrote or changed files"


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, valid_model, record_property):
    _check(corpus.run_in_process, case, tmp_path, valid_model, record_property)


@pytest.mark.parametrize("case", corpus.SUBPROCESS, ids=lambda c: c.id)
def test_bad_input_as_a_process(case, tmp_path, valid_model, record_property):
    _check(corpus.run_subprocess, case, tmp_path, valid_model, record_property)


def test_the_corpus_covers_every_command_with_at_least_100_cases():
    commands = {c.command for c in corpus.CASES}
    assert commands == set(corpus.MODULES) and len(corpus.CASES) >= 100
