"""The entry point weir builds a Python step around (written by weir at build time).

When the component is built, this module compiles the step's script,
imports every module the script and its bundled helpers import (nothing
can be imported once the component runs: componentize-py snapshots the
interpreter after this module is imported), and exports `wasi:cli/run`,
which runs the script as `__main__` each time the step executes.
"""

import ast
import importlib
import json
import linecache
import os
import sys
import traceback

import weir
from componentize_py_types import Err
from wit_world import exports

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "weir_build.json"), encoding="utf-8") as _file:
    _BUILD = json.load(_file)


def _source(relative):
    with open(os.path.join(_HERE, relative), encoding="utf-8") as file:
        return file.read()


def _is_optional(parents):
    """Whether an import sits in a `try` that catches its failure."""
    for node in parents:
        if isinstance(node, ast.Try) and node.handlers:
            return True
    return False


def _imports(tree):
    """(module, optional, line) for every absolute import in `tree`."""
    found = []

    def visit(node, parents):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, _is_optional(parents), node.lineno, ()))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append((node.module, _is_optional(parents), node.lineno, names))
        for child in ast.iter_child_nodes(node):
            visit(child, parents + [node])

    visit(tree, [])
    return found


def _load(module, names):
    importlib.import_module(module)
    for name in names:
        # `from package import module` imports a submodule; an attribute is fine too.
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            pass


def _prepare():
    script = _BUILD["script"]
    code = compile(_source(script), script, "exec")
    # The sources are not readable once the step runs: tracebacks read them from here.
    linecache.cache[script] = (0, None, _source(script).splitlines(True), script)
    for shown in [script] + _BUILD["modules"]:
        tree = ast.parse(_source(shown), shown)
        for module, optional, line, names in _imports(tree):
            try:
                _load(module, names)
            except ImportError as err:
                if optional:
                    continue
                raise ImportError(
                    f"weir: {shown}, line {line}: `{module}` cannot be imported in the sandbox ({err}); "
                    "only pure-Python modules run in a Python step (bundle them next to the script or list "
                    "them in `requirements`), and numeric work belongs in the engine's natives"
                ) from None
    for name in _BUILD["module_names"]:
        module = importlib.import_module(name)
        path = getattr(module, "__file__", None)
        if path:
            linecache.cache[path] = (0, None, _source(path).splitlines(True), path)
    return code


def _deny_network():
    """Makes the sandbox's refusal of sockets a clear error (the runtime denies them anyway)."""
    import socket

    def denied(*args, **kwargs):
        raise PermissionError("a weir step has no network access: it sees only its inputs and outputs")

    socket.create_connection = socket.getaddrinfo = socket.create_server = denied
    socket.socket.connect = socket.socket.connect_ex = socket.socket.bind = denied


_deny_network()
_CODE = _prepare()


class Run(exports.Run):
    """Runs the script as `__main__`: an uncaught exception fails the step with its traceback."""

    def run(self) -> None:
        namespace = {"__name__": "__main__", "__file__": _BUILD["script"], "__builtins__": __builtins__}
        try:
            exec(_CODE, namespace)
        except SystemExit as exit:
            if exit.code not in (None, 0):
                if not isinstance(exit.code, int):
                    print(exit.code, file=sys.stderr)
                raise Err(None) from None
        except BaseException as error:
            # From the script's frame down: this method's frame is weir's, not the user's.
            traceback.print_exception(type(error), error, error.__traceback__.tb_next)
            sys.stderr.flush()
            raise Err(None) from None
        finally:
            sys.stdout.flush()
