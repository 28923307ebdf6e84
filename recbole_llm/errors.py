"""User errors: which exceptions are a refusal of the user's input, and their one-line message.

The command line (``run_recbole_llm.py``) prints a user error as one line
``error: <message>`` and exits with status 2, without a traceback; any other
exception is a bug and propagates with its traceback.  A user error is

* an exception of one of :data:`USER_ERRORS`: a config key's value refused by its rule
  (:class:`~recbole_llm.validation.ConfigError`, which also covers unknown model,
  backbone and dataset names, missing or malformed config files and incompatible
  switches), a missing LLM (:class:`~recbole_llm.llm.catalog.LLMNotFoundError`), any
  other file the config names that does not exist (``FileNotFoundError``), a yaml error,
  a bad command line (:class:`UsageError`);
* or a *refusal*: a ``ValueError``, ``NotImplementedError`` or ``SyntaxError`` raised
  on purpose, by a ``raise`` statement, in this package or in RecBole (e.g. RecBole's
  "duplicate command arg", or a check that needs the dataset such as MLTFR's
  ``num_tokens`` against an LLM's whole vocabulary).  The same types raised inside
  torch, numpy, pandas, ... or by a builtin (``int('x')``) are not refusals: they are
  bugs and keep their traceback.

:func:`user_error_message` renders one line: the first line of the message (a chained
exception's message is never appended), long name lists shortened to a few names and
a count.
"""
import linecache
import os
import re

import yaml

from recbole_llm.llm.catalog import LLMNotFoundError
from recbole_llm.validation import ConfigError


class UsageError(ValueError):
    """A command line that cannot be parsed (e.g. ``--model`` without a value)."""


USER_ERRORS = (ConfigError, LLMNotFoundError, FileNotFoundError, yaml.YAMLError, UsageError)
REFUSALS = (ValueError, NotImplementedError, SyntaxError)

_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.realpath(module.__file__)) + os.sep
    for module in (__import__("recbole_llm"), __import__("recbole"))
)
_MAX_LISTED = 12  # a comma-separated list longer than this is shortened
_LIST = re.compile(r"(?<![\w.'\-])[\w.'\-]+(?:, [\w.'\-]+){%d,}" % _MAX_LISTED)


def _raised_on_purpose(exc):
    """``exc`` was raised by a ``raise`` statement in recbole_llm or RecBole."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = os.path.realpath(tb.tb_frame.f_code.co_filename)
    if not filename.startswith(_PACKAGE_DIRS):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def is_user_error(exc):
    """True when ``exc`` refuses the user's input (see the module docstring), False for a bug."""
    if isinstance(exc, USER_ERRORS):
        return True
    return isinstance(exc, REFUSALS) and _raised_on_purpose(exc)


def _shorten(match):
    names = match.group(0).split(", ")
    return f"{', '.join(names[:3])}, ... ({len(names)} in all)"


def user_error_message(exc):
    """One line for the user error ``exc``: no traceback, no chained message, no long lists."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        text = f"invalid yaml{where}: {exc.problem}"
    elif isinstance(exc, OSError) and exc.filename and not isinstance(exc, LLMNotFoundError):
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename!r}"
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return _LIST.sub(_shorten, text)


__all__ = ["USER_ERRORS", "REFUSALS", "UsageError", "is_user_error", "user_error_message"]
