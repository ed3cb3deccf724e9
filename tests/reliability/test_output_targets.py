"""Outputs never replace what is not a regular file: '-' is stdout, devices and FIFOs are written in place,
symlinks are followed (the link stays), block devices are refused, a FIFO nobody reads fails at once.

Device nodes are made in a temporary folder (``os.mknod``, root only); the real ``/dev`` is never touched.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from unlearn_core.errors import OutputPathError
from unlearn_core.outputs import check_output_path, write_output_bytes


def _mknod(path, kind, major, minor):
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making device nodes needs root")


def test_dash_writes_standard_output(capfdbinary):
    check_output_path("-")
    write_output_bytes("-", b"id,method\n1,unsc\n")
    assert capfdbinary.readouterr().out == b"id,method\n1,unsc\n"


def test_full_device_fails_and_stays_a_device(tmp_path):
    full = tmp_path / "full"
    _mknod(full, stat.S_IFCHR, 1, 7)  # the same device as /dev/full
    check_output_path(full)
    with pytest.raises(OutputPathError, match="no space left on device"):
        write_output_bytes(full, b"x" * 100)
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_null_device_is_written_in_place(tmp_path):
    null = tmp_path / "null"
    _mknod(null, stat.S_IFCHR, 1, 3)  # /dev/null
    write_output_bytes(null, b"data")
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_block_device_is_refused(tmp_path):
    block = tmp_path / "block"
    _mknod(block, stat.S_IFBLK, 7, 0)  # a loop device number; never opened
    with pytest.raises(OutputPathError, match="block device"):
        check_output_path(block)
    with pytest.raises(OutputPathError, match="block device"):
        write_output_bytes(block, b"x")


def test_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_output_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_fifo_with_a_reader_receives_the_data(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []

    def read():
        with open(fifo, "rb") as handle:  # blocks until the writer opens
            received.append(handle.read())

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(0.3)  # the reader is now blocked in open(), waiting for a writer
    check_output_path(fifo)
    write_output_bytes(fifo, b"rows\n")
    thread.join(timeout=10)
    assert received == [b"rows\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_fifo_without_reader_fails_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    check_output_path(fifo)  # must not block by reading it
    with pytest.raises(OutputPathError, match="no process is reading it"):
        write_output_bytes(fifo, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dev_stdout_of_a_child_goes_to_its_pipe(tmp_path):
    """``--csv /dev/stdout`` in a process whose stdout is a pipe: the bytes arrive, nothing is replaced."""
    code = ("from unlearn_core.outputs import check_output_path, write_output_bytes;"
            "check_output_path('/dev/stdout'); write_output_bytes('/dev/stdout', b'a,b\\n')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"a,b\n"
