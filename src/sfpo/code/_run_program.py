"""The program's sandbox for tests that call it: import the program as a module, then answer the tests' calls.

Runs as ``python -I -S`` (``_wire.py`` + this file, compiled: ``judge.runner_args``) with ``RFD WFD`` in its
own sandbox, with stdin and stdout on ``/dev/null``; RFD and WFD are pipes to the tests' sandbox, which sends the first message: ``["program", source,
preamble]``. The program is imported as the module ``solution`` (not run as ``__main__``, as HumanEval's and
LiveCodeBench's harnesses do), after LiveCodeBench's imports when ``preamble`` is set. Then each message is a
request: ``get`` a top-level name, ``call`` an object with arguments (the reply carries the result and the
arguments' new state), ``op`` on an object (attribute, item, length, truth, iteration...), ``next`` items of an
iterator. Nothing here is trusted by the other side: the program can rewrite all of it.
"""

# LiveCodeBench's harness runs functional (LeetCode) solutions after these imports (so `List[int]` in a
# starter signature works) and with a recursion limit of 50,000.
_PREAMBLE = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
    "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
    "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
    "import string, re, datetime, collections, heapq, bisect, copy, math, random, statistics, itertools\n"
    "import functools, operator, io, sys, json\nsys.setrecursionlimit(50000)\n"
)


class _ProgramSide(Side):  # noqa: F821 (Side comes from _wire.py, prepended)
    def __init__(self, rfd, wfd, builtins_dict, namespace):
        super().__init__(rfd, wfd, builtins_dict)
        self.namespace = namespace
        self.pending = {}  # iterator ref -> exception to raise at the next request

    def serve(self, msg):
        try:
            op = msg[0]
            dec = Decoder(self)  # noqa: F821
            if op == "get":
                if msg[1] not in self.namespace:
                    raise NameError(f"name {msg[1]!r} is not defined")
                self.reply(dec, (), self.namespace[msg[1]])
            elif op == "call":
                target = self.exports.get(msg[1])
                args = [dec.value(a) for a in msg[2]]
                raw = msg[3]
                kwargs = {raw[i]: dec.value(raw[i + 1]) for i in range(0, len(raw), 2)}
                result = target(*args, **kwargs)
                self.reply(dec, [*args, *kwargs.values()], result)
            elif op == "op":
                target = self.exports.get(msg[1])
                args = [dec.value(a) for a in msg[3]]
                result = self.operate(target, msg[2], args)
                self.reply(dec, args, result)
            elif op == "next":
                self.reply(dec, (), self.items(msg[1], msg[2]))
            else:
                raise WireError(f"unknown request {op!r}")  # noqa: F821
        except WireError:  # noqa: F821
            raise
        except BaseException as exc:  # the program's exception is an answer too
            self.reply_error(exc)

    @staticmethod
    def operate(target, name, args):
        if name == "getattr":
            return getattr(target, *args)
        if name == "repr":
            return repr(target)
        if name == "str":
            return str(target)
        if name == "bool":
            return bool(target)
        if name == "len":
            return len(target)
        if name == "getitem":
            return target[args[0]]
        if name == "setitem":
            target[args[0]] = args[1]
            return None
        if name == "contains":
            return args[0] in target
        if name == "iter":
            return iter(target)
        raise ValueError(f"unknown operation {name!r}")

    def items(self, ref, size):
        if ref in self.pending:
            raise self.pending.pop(ref)
        iterator, out = self.exports.get(ref), []
        for _ in range(max(1, min(int(size), 1024))):
            try:
                out.append(next(iterator))
            except StopIteration:
                break
            except BaseException as exc:
                if not out:
                    raise
                self.pending[ref] = exc
                break
        return out

    def reply(self, dec, args, result):
        memo = {id(obj): wid for wid, obj in dec.seen.items()}
        enc = Encoder(self, memo, max(dec.seen, default=0) + 1)  # noqa: F821
        states = [enc.value(a) if type(a) not in _SCALARS else "null" for a in args]
        self.send(f'["ok",[{",".join(states)}],{enc.value(result)}]')


_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _main():
    import builtins
    import io
    import os
    import sys
    import types

    rfd, wfd = int(sys.argv[-2]), int(sys.argv[-1])
    side = _ProgramSide(rfd, wfd, dict(builtins.__dict__), {})
    exit_ = os._exit
    try:
        first = side.recv()
        program, preamble = first[1], first[2]
    except BaseException:
        exit_(1)
    sys.stdin = io.StringIO("")
    builtins.exit = builtins.quit = sys.exit  # site.py's, which -S leaves out
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    side.namespace = module.__dict__
    try:
        if preamble:
            exec(compile(_PREAMBLE, "<preamble>", "exec"), module.__dict__)
        exec(compile(program, "<solution>", "exec"), module.__dict__)
    except BaseException as exc:  # SystemExit included: a program that exits has not answered
        try:
            side.reply_error(exc)
        except BaseException:
            pass
        exit_(1)
    try:
        side.send('["ready"]')
        while True:
            side.serve(side.recv())
    except BaseException:
        exit_(0)


if __name__ == "__main__":
    _main()
