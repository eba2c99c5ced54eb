"""Sandbox side of in-process tests: tests the host cannot parse into calls run after the program, hardened.

Runs as ``python -I -S -c <this file's text>`` inside a sandbox without ``/proc`` and reads one JSON object on
stdin: ``nonce``, ``program``, ``tests``, ``modules`` (what the tests import) and ``free_modules`` (standard
modules the tests use by name without importing them). It writes the nonce as its last line only when the tests
ran to their end. Before the program runs, it

- binds ``exec``, ``compile`` (asserts are compiled with ``optimize=0``), ``os.write`` and ``os._exit``;
- copies ``builtins`` and imports fresh copies of the tests' modules, kept out of ``sys.modules``;
- installs an audit hook (it cannot be removed) that refuses what reads the runner's state or rewrites code:
  frames (``sys._getframe``, ``sys._current_frames``, ``tb_frame``, ``gi_frame``, ``cr_frame``, ``ag_frame``),
  tracing and profiling, the garbage collector's object lists, ``ctypes``, building code objects, new audit hooks,
  and opening anything under ``/proc``.

The tests then run in a namespace of their own: the fresh builtins (with an ``__import__`` that hands out the
fresh modules), the fresh modules, plain data the program defined, and the program's callables behind a guard
that raises unless a call returns plain builtin data (so an object whose ``__eq__`` is always true never reaches
the test). docs/sandbox.md lists what this still trusts.
"""


def _main():
    import builtins
    import io
    import json
    import os
    import sys
    import types
    from importlib import util

    write, exit_, exec_, compile_ = os.write, os._exit, exec, compile
    type_, callable_, all_, module_type = type, callable, all, types.ModuleType
    fresh_builtins = dict(builtins.__dict__)
    real_import = builtins.__import__

    payload = json.loads(sys.stdin.buffer.read())
    nonce = payload.pop("nonce").encode()
    program, tests = payload.pop("program"), payload.pop("tests")
    sys.stdin = io.StringIO("")
    sys.stdout = open(os.devnull, "w")  # what the program prints is not part of the verdict

    fresh = {}
    for name in [*payload["modules"], *payload["free_modules"]]:
        for i, part in enumerate(name.split(".")):
            dotted = ".".join(name.split(".")[: i + 1])
            if dotted in fresh:
                continue
            try:
                spec = util.find_spec(dotted)
                module = util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except Exception:
                break  # the tests' own import fails as it would have
            fresh[dotted] = module
            if i:
                setattr(fresh[".".join(name.split(".")[:i])], part, module)

    def test_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            module = fresh.get(name if fromlist else name.partition(".")[0])
            if module is not None:
                return module
        return real_import(name, globals, locals, fromlist, level)

    fresh_builtins["__import__"] = test_import

    refused = frozenset(
        (
            "sys._getframe",
            "sys._getframemodulename",
            "sys._current_frames",
            "sys._current_exceptions",
            "sys.settrace",
            "sys.setprofile",
            "sys.addaudithook",
            "sys.monitoring.register_callback",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "code.__new__",
        )
    )
    frame_attributes = frozenset(("tb_frame", "gi_frame", "cr_frame", "ag_frame"))
    frame_events = frozenset(("sys._getframe", "sys._getframemodulename", "sys._current_frames"))

    def audit(event, args):
        if event in refused or event.startswith("ctypes."):
            # AttributeError where the standard library expects one (namedtuple, typing: "no _getframe here")
            kind = AttributeError if event in frame_events else RuntimeError
            raise kind(f"{event} is refused in the test sandbox")
        if event == "object.__getattr__" and args[1] in frame_attributes:
            raise AttributeError(f"{args[1]} is refused in the test sandbox")
        if event == "import" and args[0].partition(".")[0] in ("ctypes", "_ctypes"):
            raise ImportError(f"{args[0]} is refused in the test sandbox")
        if event == "open" and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if path == "/proc" or path.startswith("/proc/"):
                raise PermissionError(f"{path} is refused in the test sandbox")

    sys.addaudithook(audit)

    def is_data(value, depth=0):
        t = type_(value)
        if value is None or t is bool or t is int or t is float or t is complex or t is str or t is bytes:
            return True
        if depth > 64:
            return False
        if t is list or t is tuple or t is set or t is frozenset:
            return all_(is_data(v, depth + 1) for v in value)
        if t is dict:
            return all_(is_data(k, depth + 1) and is_data(v, depth + 1) for k, v in value.items())
        return False

    def guard(name, fn):
        def guarded(*args, **kwargs):
            result = fn(*args, **kwargs)
            if not is_data(result):
                raise TypeError(f"{name}() returned a {type_(result).__name__}, not plain data")
            return result

        return guarded

    scope = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec_(compile_(program, "<program>", "exec", 0, True, 0), scope)
    except BaseException:
        exit_(1)

    namespace = {"__name__": "__main__", "__builtins__": fresh_builtins}
    for name, value in list(scope.items()):
        if name.startswith("__") or name in fresh_builtins or type_(value) is module_type:
            continue
        if callable_(value):
            namespace[name] = guard(name, value)
        elif is_data(value):
            namespace[name] = value
    for name in payload["free_modules"]:  # a module the tests use because the program imported it
        if type_(scope.get(name)) is module_type and name in fresh:
            namespace[name] = fresh[name]
    try:
        exec_(compile_(tests, "<tests>", "exec", 0, True, 0), namespace)
    except BaseException:
        exit_(1)
    write(1, b"\n" + nonce + b"\n")
    exit_(0)


if __name__ == "__main__":
    _main()
