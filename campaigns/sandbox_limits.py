"""The resource limits of the mail sandbox (campaigns.sandbox): the per-render budget, the
checked operators, filters and globals, and the guards that every loop, `~` and printed value
passes through. The module docstring of campaigns.sandbox says why the limits live in the
environment rather than in a child process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from functools import wraps
from typing import Any

from jinja2 import Undefined, nodes, pass_eval_context
from jinja2.runtime import LoopContext, Macro, markup_join, str_join
from jinja2.utils import Cycler, Joiner, Namespace
from jinja2.visitor import NodeTransformer

MAX_SOURCE_CHARS = 200_000  # a template's source (the body of a 102 KB mail fits well)
MAX_OUTPUT_CHARS = 1_000_000  # one rendered part; the content check wants far less (102 KB)
MAX_VALUE_CHARS = 500_000  # one string or sequence made by an operator or filter
MAX_ALLOCATED = 5_000_000  # all strings and sequences made by operators and filters, per render
MAX_ITERATIONS = 100_000  # loop iterations and calls, per render
MAX_RANGE = 10_000
MAX_INT_BITS = 4_096
RENDER_SECONDS = 2.0  # per part; a normal mail renders in well under a millisecond


class RenderError(Exception):
    """A template could not be compiled or rendered; the message says where and why."""

    def __init__(self, message: str, *, part: str = "", lineno: int | None = None) -> None:
        self.part = part
        self.lineno = lineno
        self.detail = message
        where = part or "template"
        if lineno:
            where += f", line {lineno}"
        super().__init__(f"{where}: {message}" if part or lineno else message)


class RenderLimitExceeded(RenderError):
    """A template wanted more output, memory or time than any mail needs."""


class Budget:
    __slots__ = ("allocated", "deadline", "steps")

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.allocated = 0
        self.steps = 0


_local = threading.local()


def current_budget() -> Budget:
    budget = getattr(_local, "budget", None)
    if budget is None:
        raise RenderLimitExceeded("templates are rendered only through campaigns.sandbox.render")
    return budget


def tick(budget: Budget) -> None:
    budget.steps += 1
    if budget.steps > MAX_ITERATIONS:
        raise RenderLimitExceeded(
            f"the template runs more than {MAX_ITERATIONS:,} loop steps or calls"
        )
    if time.monotonic() > budget.deadline:
        raise RenderLimitExceeded(f"the template takes longer than {RENDER_SECONDS:g} s to render")


def charge(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise RenderLimitExceeded(
            f"the template makes a value of {size:,} characters (at most {MAX_VALUE_CHARS:,})"
        )
    budget = current_budget()
    budget.allocated += size
    if budget.allocated > MAX_ALLOCATED:
        raise RenderLimitExceeded(
            f"the template makes more than {MAX_ALLOCATED:,} characters of values in all"
        )


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


def _check_int(value: Any) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise RenderLimitExceeded("the template computes a number that is too large")


_FORMAT_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d{4,})[^{}]*\}")


def _check_format_string(spec: str) -> None:
    """Refuse printf-style widths that allocate a huge string: "%0999999999d" % 1."""
    for match in _FORMAT_WIDTH.finditer(spec):
        for group in match.groups():
            if group == "*" or (group and int(group) > 1000):
                raise RenderLimitExceeded("a format width or precision above 1000 is not allowed")


def begin_render() -> Budget | None:
    """Give the render about to start a fresh budget; returns the caller's, for `end_render`.
    (Two plain calls rather than a context manager: this runs for every part of every mail.)"""
    previous = getattr(_local, "budget", None)
    _local.budget = Budget(RENDER_SECONDS)
    return previous


def end_render(previous: Budget | None) -> None:
    _local.budget = previous


# Operators -------------------------------------------------------------------------------------


def mul(left: Any, right: Any) -> Any:
    if isinstance(left, int) and _size(right):
        left, right = right, left
    if _size(left) and isinstance(right, int):
        charge(len(left) * max(right, 0))
    elif (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise RenderLimitExceeded("the template computes a number that is too large")
    return left * right


def power(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and left.bit_length() * right > MAX_INT_BITS
    ):
        raise RenderLimitExceeded("the template computes a number that is too large")
    return left**right


def add(left: Any, right: Any) -> Any:
    if _size(left) and _size(right):
        charge(len(left) + len(right))
    result = left + right
    _check_int(result)
    return result


def mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_format_string(left)
        result = left % right
        charge(len(result))
        return result
    return left % right


# Filters ---------------------------------------------------------------------------------------


def _charged(func):
    """Charge a filter's result to the budget (sizes stay within a small factor of the input)."""

    @wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        size = _size(result)
        if size:
            charge(size)
        return result

    return filter_


def _precheck(func, check):
    """Run `check(value, *args, **kwargs)` before a widening filter, then charge the result."""
    passes_first = getattr(func, "jinja_pass_arg", None) is not None

    @wraps(func)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        rest = args[1:] if passes_first else args
        check(*rest, **kwargs)
        result = func(*args, **kwargs)
        size = _size(result)
        if size:
            charge(size)
        return result

    return filter_


def _width(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    text = str(value)
    if isinstance(width, str):
        lines = text.count("\n") + 1
        _charge_estimate(len(text) + lines * len(width))
    elif isinstance(width, int):
        lines = text.count("\n") + 1
        _charge_estimate(len(text) + max(width, 0) * lines)


def _charge_estimate(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise RenderLimitExceeded(
            f"the template would make a value of {size:,} characters (at most {MAX_VALUE_CHARS:,})"
        )


def _replace_check(value: Any, old: Any = "", new: Any = "", count: Any = None, **kw) -> None:
    text, new = str(value), str(new)
    times = len(text) + 1 if not old else text.count(str(old))
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    _charge_estimate(len(text) + times * len(new))


def _join_check(value: Any, d: Any = "", attribute: Any = None, **kw) -> None:
    if isinstance(value, (list, tuple)) and attribute is None:
        total = sum(len(v) if isinstance(v, str) else 20 for v in value)
        _charge_estimate(total + max(len(value) - 1, 0) * len(str(d)))


def _format_check(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_format_string(str(value))


def _wordwrap_check(
    value: Any, width: Any = 79, break_long_words: Any = True, wrapstring=None, **kw
):
    text = str(value)
    breaks = len(text) // max(int(width) if isinstance(width, int) else 1, 1) + 1
    _charge_estimate(len(text) + breaks * len(str(wrapstring or "\n")))


def _slice_check(value: Any, slices: Any = 1, *args: Any, **kwargs: Any) -> None:
    if not isinstance(slices, int) or slices > 1000:
        raise RenderLimitExceeded("slice takes at most 1000 slices")


def _batch_check(value: Any, linecount: Any = 1, *args: Any, **kwargs: Any) -> None:
    if not isinstance(linecount, int) or linecount < 1 or linecount > MAX_RANGE:
        raise RenderLimitExceeded(f"batch takes a size between 1 and {MAX_RANGE}")


def _tojson_check(value: Any, indent: Any = None, **kwargs: Any) -> None:
    if indent is not None and (not isinstance(indent, int) or indent > 16):
        raise RenderLimitExceeded("tojson takes an indent of at most 16")


_PRECHECKS = {
    "center": _width,
    "indent": _width,
    "replace": _replace_check,
    "join": _join_check,
    "format": _format_check,
    "wordwrap": _wordwrap_check,
    "slice": _slice_check,
    "batch": _batch_check,
    "tojson": _tojson_check,
}


# Filters whose result is not larger than their input (case mapping aside, which does not
# compound), or of a fixed size: nothing to charge.
# The others either take a size (prechecked above) or grow their input by a bounded factor
# (escape, urlencode, tojson…): chaining those could still multiply it, so they are charged.
_SHRINKING_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "dictsort",
        "filesizeformat",
        "first",
        "float",
        "groupby",
        "int",
        "items",
        "last",
        "length",
        "lower",
        "map",
        "max",
        "min",
        "random",
        "reject",
        "rejectattr",
        "reverse",
        "round",
        "safe",
        "select",
        "selectattr",
        "sort",
        "striptags",
        "sum",
        "title",
        "trim",
        "truncate",
        "unique",
        "upper",
        "wordcount",
    }
)


def guarded_filters(filters: dict) -> dict:
    guarded = {}
    for name, func in filters.items():
        check = _PRECHECKS.get(name)
        if check:
            guarded[name] = _precheck(func, check)
        elif name in _SHRINKING_FILTERS:
            guarded[name] = func
        else:
            guarded[name] = _charged(func)
    return guarded


# Globals ---------------------------------------------------------------------------------------


def limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitExceeded(f"range() gives at most {MAX_RANGE:,} numbers")
    return numbers


class ChargedNamespace(Namespace):
    """`namespace()` whose assignments are charged: `{% set ns.s = ns.s ~ ns.s %}` in a loop
    cannot double a string thirty times."""

    def __setitem__(self, name: str, value: Any) -> None:
        size = _size(value)
        if size:
            charge(size)
        _check_int(value)
        super().__setitem__(name, value)


# Objects a template can reach but that are no text: printing them would put a Python repr
# ("<class 'jinja2.utils.Cycler'>", "<Namespace {...}>") into a mail. They print nothing.
_NOT_TEXT = (Cycler, Joiner, Namespace, LoopContext, Macro, type)


def printable(value: Any) -> Any:
    """Helpers and callables print nothing, never a repr."""
    if isinstance(value, _NOT_TEXT) or (callable(value) and not isinstance(value, Undefined)):
        return ""
    return value


def finalize(value: Any) -> Any:
    """Every printed value passes here: helpers and callables print nothing (never a repr);
    large values are charged (literal text is charged by the loops that repeat it), so the
    output stays bounded without checking every chunk."""
    value = printable(value)
    if isinstance(value, str):
        if len(value) > 1000:
            charge(len(value))
    elif isinstance(value, (list, tuple, dict)):
        charge(8 * len(value))
    return value


def loop_guard(iterable: Iterable, static_size: int) -> Iterator:
    """Iterate with a deadline and a step cap; each step is charged the loop body's literal
    text, so what a loop prints counts against the budget without reading the output."""
    budget = current_budget()
    for item in iterable:
        budget.steps += 1
        budget.allocated += static_size
        if (
            budget.steps > MAX_ITERATIONS
            or budget.allocated > MAX_ALLOCATED
            or time.monotonic() > budget.deadline
        ):
            tick(budget)
            charge(0)
        yield item


@pass_eval_context
def concat_guard(eval_ctx, parts: list) -> str:
    """`a ~ b`, with the size checked before joining."""
    strings = [p if isinstance(p, str) else str(p) for p in parts]
    charge(sum(map(len, strings)))
    return markup_join(parts) if eval_ctx.autoescape else str_join(strings)


# The guards are filters, not globals: a template cannot rebind a filter, and a filter is called
# directly rather than through the sandbox's `call` (a loop costs one function call more).
LOOP_FILTER = "_mlm_loop"
CONCAT_FILTER = "_mlm_concat"
TEXT_FILTER = "_mlm_text"
_PLAIN = (nodes.TemplateData, nodes.Const)


class Guard(NodeTransformer):
    """Route every loop and every `~` through the checked helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        static = sum(
            len(data.data) for child in node.body for data in child.find_all(nodes.TemplateData)
        )
        node.iter = nodes.Filter(
            node.iter,
            LOOP_FILTER,
            [nodes.Const(static, lineno=node.lineno)],
            [],
            None,
            None,
            lineno=node.lineno,
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, CONCAT_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        """Jinja computes a printed expression of constants (`'abc'.upper`) while compiling,
        and escapes it before `finalize` sees it; such expressions pass `printable` first."""
        self.generic_visit(node)
        node.nodes = [
            child
            if isinstance(child, _PLAIN) or any(child.find_all(nodes.Name))
            else nodes.Filter(child, TEXT_FILTER, [], [], None, None, lineno=child.lineno)
            for child in node.nodes
        ]
        return node
