"""Writing a command's output directory as a set.

Every command that writes a directory (``python -m software compress``, ``python -m gen``,
``python -m sim.model --build-root``, ``python -m fpga build`` / ``verilog``) fills a staging
directory beside the target and renames it into place only once everything is written: a failure
at any point (a full disk, Ctrl-C, a tool error) leaves the previous output whole, or nothing; never
a new file beside an old one. The previous output, if any, is set aside by a rename and removed only
after the new one is in place.

An existing directory is replaced only if it is empty or an earlier output of the same kind (it
holds ``marker``, e.g. ``manifest.json``), so ``-o .`` never deletes a user's files. Every problem
with the output path (a file in the way, no permission, an unwritable parent) is an
:class:`OutputError` with a one-line message, found before any work is done where it can be.

Lives in software/ because every package that writes outputs may import it (DESIGN.md §1).
"""

import contextlib
import os
import shutil
import tempfile


class OutputError(ValueError):
    """The output path cannot receive the output. One line, fit for a command line."""


def _first_existing(path):
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def output_problem(out, marker=None):
    """Why directory ``out`` cannot be (re)placed by a new output, or None."""
    out = os.path.abspath(os.fspath(out))
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            return f"output path {out} exists and is not a directory"
        if marker is not None:
            try:
                entries = os.listdir(out)
            except OSError as e:
                return f"cannot read {out}: {e.strerror or e}"
            if entries and marker not in entries:
                return (f"output directory {out} is not empty and not an earlier build (no {marker}); "
                        "choose another with -o")
        parent = os.path.dirname(out)
    else:
        probe = _first_existing(os.path.dirname(out))
        if not os.path.isdir(probe):
            return f"cannot create {out}: {probe} is not a directory"
        parent = probe
    return _unwritable(parent)


def _unwritable(directory):
    """Why nothing can be created in ``directory``, or None. Tried, not guessed from permission
    bits: root passes every os.access check, and a read-only file system (/proc, a mounted image)
    refuses writes whatever the bits say."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sparsegen-probe-", dir=directory))
    except OSError as e:
        return f"cannot write to {directory}: {e.strerror or e}"
    return None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def output_set(out, *, marker=None):
    """Yield a fresh staging directory (str) beside ``out``; when the block ends without an
    exception, it becomes ``out`` (the old ``out``, if any, is removed afterwards). On an exception
    the staging directory is removed and ``out`` is left as it was. OutputError for a bad path."""
    out = os.path.abspath(os.fspath(out))
    if problem := output_problem(out, marker):
        raise OutputError(problem)
    parent, base = os.path.dirname(out), os.path.basename(out)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{base}.partial-", dir=parent)
        os.chmod(staging, 0o777 & ~_umask())     # mkdtemp makes it private; an output is not
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror or e}") from None
    try:
        yield staging
        _commit(staging, out, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staging, out, marker):
    if problem := output_problem(out, marker):     # changed while the output was being made
        raise OutputError(problem)
    old = None
    try:
        if os.path.lexists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
            os.rename(out, os.path.join(old, "previous"))
        os.rename(staging, out)
    except OSError as e:
        if old is not None and os.path.lexists(os.path.join(old, "previous")) and not os.path.lexists(out):
            os.rename(os.path.join(old, "previous"), out)
        raise OutputError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def directory_problem(path):
    """Why ``path`` cannot be a directory that a command writes into (a cache or build root, kept
    and added to rather than replaced), or None."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            return f"{path} exists and is not a directory"
        probe = path
    else:
        probe = _first_existing(os.path.dirname(path))
        if not os.path.isdir(probe):
            return f"cannot create {path}: {probe} is not a directory"
    return _unwritable(probe)


def write_atomically(path, data: bytes | str):
    """One file written whole or not at all: into a temporary file beside it, then renamed."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
