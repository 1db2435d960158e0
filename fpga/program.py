"""Loading a bitstream onto a board with whichever programmer is installed (none comes from PyPI)."""

import shutil
import subprocess


class ProgramError(RuntimeError):
    """No programmer (status 2), or the programmer failed (status 1); the message is one line."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def find_programmer(board):
    """[executable, arguments...] of the first installed programmer for `board`."""
    for tool, args in board.programmers:
        path = shutil.which(tool)
        if path:
            return [path, *args]
    names = " or ".join(tool for tool, _ in board.programmers)
    raise ProgramError(f"programming the {board.name} needs {names} on PATH, and none is installed "
                       f"(install one, or build without --program and load the bitstream yourself)", status=2)


def program(board, bitstream, command=None):
    """Write `bitstream` to the board (its configuration flash where the tool supports it)."""
    command = command or find_programmer(board)
    proc = subprocess.run([*command, bitstream], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
        raise ProgramError(f"{command[0]} failed (exit status {proc.returncode})"
                           + (f": {lines[-1].strip()}" if lines else ""))
    return command[0]
