"""`python -m fpga run` refuses numbers that would test nothing, in one line with status 2, before it
looks at the build directory or the serial port."""

import pytest

from fpga.cli import main


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "argument --batch: wants a number of vectors from 1 to 65536, not '0'"),
    (["--batch", "-5"], "argument --batch: wants a number of vectors from 1 to 65536, not '-5'"),
    (["--batch", "1.5"], "argument --batch: wants a number of vectors from 1 to 65536, not '1.5'"),
    (["--seed", "-1"], "argument --seed: wants a whole number of at least 0, not '-1'"),
])
def test_run_refuses_bad_numbers(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["run", str(tmp_path / "no-build"), "--port", "/dev/does-not-exist", *args])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m fpga run: error: {message}"]
