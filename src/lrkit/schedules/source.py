"""Bounded reading of the text users hand over as a schedule: ``@file`` and JSON.

A schedule flag (``--lr-scheduler``, ``--group-schedule``, ``--wd-schedule`` ...) takes a JSON spec
inline or as ``@file.json``. Both are untrusted input, so both are read within bounds:

* :func:`read_text_file` reads only a *regular* file of at most :data:`MAX_SOURCE_BYTES` bytes; a
  directory, a FIFO, a device (``/dev/zero``) or a bigger file is refused before anything is read,
  and a file that grows while being read stops at the cap. It never blocks on a FIFO.
* :func:`loads_json` parses JSON nested at most :data:`MAX_JSON_DEPTH` arrays/objects deep, so a
  hostile ``[[[[...]]]]`` is an error instead of a ``RecursionError``; it also refuses ``NaN`` and
  ``Infinity`` (not JSON) and text longer than :data:`MAX_SOURCE_BYTES`.

Errors are :class:`SourceError` (a ``ValueError``) naming the path or the label, what was found and
the limit. This module is in the math layer so that every layer that reads a schedule shares it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from itertools import accumulate
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "MAX_SOURCE_BYTES", "SourceError", "json_depth", "loads_json", "read_text_file"]

#: The largest spec file or inline JSON spec read, in bytes (1 MiB: real specs are a few hundred bytes).
MAX_SOURCE_BYTES = 1 << 20
#: The deepest nesting of JSON arrays and objects accepted (a spec nests about 2 levels per child schedule).
MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class SourceError(ValueError):
    """A spec file or JSON text outside the bounds: the message names it, what it is and the limit."""


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_text_file(path: str | os.PathLike[str], what: str = "spec file", limit: int = MAX_SOURCE_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes.

    The file is opened without blocking (a FIFO with no writer does not hang) and checked on the
    open descriptor, so it cannot be swapped for another between the check and the read.

    Raises:
        SourceError: ``path`` cannot be opened, is not a regular file, holds more than ``limit``
            bytes, or is not UTF-8; the message names ``what``, the path, the size or type and the cap.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise SourceError(f"cannot read {what} {name!r}: {err.strerror}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{what} {name!r} is {_kind(info.st_mode)}; only a regular file is read")
        if info.st_size > limit:
            raise SourceError(f"{what} {name!r} is {info.st_size} bytes; at most {limit} bytes are read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise SourceError(f"cannot read {what} {name!r}: {err.strerror}") from err
    finally:
        os.close(fd)
    if size > limit:
        raise SourceError(f"{what} {name!r} grew past {limit} bytes while being read; at most {limit} bytes are read")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as err:
        raise SourceError(f"{what} {name!r} is not UTF-8 text (byte {err.start}: {err.reason})") from err


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON ``text`` (0 for a scalar), counting brackets outside strings.

    Linear in ``len(text)`` and without recursion, so it can run before :func:`json.loads` on hostile text.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_json(text: str, label: str = "JSON", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(text)`` within bounds: at most :data:`MAX_SOURCE_BYTES` characters and ``max_depth`` levels.

    Raises:
        SourceError: the text is too long or nests too deep (the message names ``label``, the depth
            or length and the limit).
        json.JSONDecodeError: the text is not JSON.
        ValueError: ``NaN``/``Infinity`` (not JSON), or an integer too long to convert.
    """
    if len(text) > MAX_SOURCE_BYTES:
        raise SourceError(f"{label} is {len(text)} characters long; at most {MAX_SOURCE_BYTES} are read")
    depth = json_depth(text)
    if depth > max_depth:
        raise SourceError(f"{label} nests {depth} levels deep; at most {max_depth} levels of arrays/objects are read")
    return json.loads(text, parse_constant=_no_constant)
