"""weir's SDK for steps written in Python.

A Python step is a script that weir builds into a sandboxed WebAssembly
component (with componentize-py) and runs like any other step:

- each input is at ``/in/<name>`` (read-only): :func:`input`;
- each declared output must be written at ``/out/<name>``: :func:`output`;
- the step's parameters are a dict: :func:`params`;
- :func:`metric` and :func:`progress` report to the engine as the step runs;
- :mod:`weir.native` runs the engine's native functions (``gemm`` and any
  other the host registered), on a GPU when the step holds one.

Only pure-Python code runs in the sandbox: numeric work belongs in natives.
"""

import json as _json

from wit_world.imports import host as _host

from . import native

__all__ = ["params", "input", "output", "read_input", "read_input_text", "write_output", "metric", "progress", "native"]

INPUT_DIR = "/in"
"""Where the step's inputs are."""
OUTPUT_DIR = "/out"
"""Where the step writes its declared outputs."""
PARAMS_FILE = "/in/.params.json"
"""The step's parameters, as weir hands them over."""


def params():
    """The step's parameters: a dict of the values the manifest (or the run) gave."""
    with open(PARAMS_FILE, encoding="utf-8") as file:
        return _json.load(file)


def input(name):  # noqa: A001 - mirrors the Rust SDK's `input`
    """The path of input ``name`` (a file or a directory)."""
    return f"{INPUT_DIR}/{name}"


def output(name):
    """The path where output ``name`` must be written (a file, or a directory for a `dir` output)."""
    return f"{OUTPUT_DIR}/{name}"


def read_input(name):
    """The bytes of file input ``name``."""
    with open(input(name), "rb") as file:
        return file.read()


def read_input_text(name):
    """The text (UTF-8) of file input ``name``."""
    with open(input(name), encoding="utf-8") as file:
        return file.read()


def write_output(name, contents):
    """Writes file output ``name``: ``contents`` is ``bytes`` or ``str`` (written as UTF-8)."""
    if isinstance(contents, str):
        contents = contents.encode("utf-8")
    with open(output(name), "wb") as file:
        file.write(contents)


def metric(name, value, step=None):
    """Records a value of metric ``name`` (the last value is the step's; every value is an event).

    ``step`` places the value on the chart's x axis: the epoch or batch it
    belongs to, a whole number ``>= 0``. Without it, values are plotted in
    the order they were recorded.
    """
    if step is None:
        _host.metric(str(name), float(value))
        return
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"weir.metric: step must be a whole number >= 0, not {step!r}")
    _host.metric_at(str(name), float(value), step)


def progress(done, total):
    """Reports progress: ``done`` units of work out of ``total``."""
    _host.progress(int(done), int(total))
