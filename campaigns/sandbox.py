"""The Jinja2 sandbox for everything a unit writes (subject, body, layout), with resource limits.

Jinja2's `SandboxedEnvironment` keeps templates away from Python internals but does not limit
resources: `{{ "a" * 50000000 }}` renders, `{% for i in range(99999) %}{% for j in range(99999)
%}{% endfor %}{% endfor %}` runs for hours. We add the limits here, inside the environment,
rather than rendering in a child process with a kill timer: a process per render would cost far
more than the render itself (we render tens of thousands of mails per campaign), and SIGALRM
works only in a main thread. So every way a template can grow output or burn time passes a check:

- sizes are checked *before* allocating: sequence `*` and `+`, `**`, `%`, the `~` concatenation
  (compiled to a checked join), the filters that widen (center, indent, replace, join, format,
  wordwrap, slice…), and every filter result and `namespace` assignment is charged to a
  per-render allocation budget;
- time: every `for` loop iterates through a guard (the loop's iterable is wrapped when the
  template is compiled) and every call (macros, methods, `range`) checks a per-render deadline
  and a step cap, so a loop that prints nothing still stops;
- output: every printed value passes `finalize`, which charges large ones, and each loop step is
  charged the literal text of the loop's body, so the output is bounded without looking at each
  of its chunks (which would cost a fifth of the render);
- attribute access is an allowlist (a few harmless `str` and `dict` methods, loop and namespace
  fields), `str.format` is not reachable at all, and a refused attribute raises at once with a
  clear message instead of printing nothing;
- `range` yields at most 10,000 numbers; `lipsum` is gone; template sources have a size cap.

A template that breaks a limit raises `RenderLimitExceeded`; any failure while rendering raises
`RenderError` with the template line, never anything else, so a worker records it and goes on.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from functools import wraps
from typing import Any

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
    pass_eval_context,
)
from jinja2.runtime import LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment, SecurityError
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

# One Jinja construct in a template's source: a raw block, an expression, a statement, a comment.
JINJA_CONSTRUCT = re.compile(
    r"""
      \{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}
    | \{\{(?:[^}'"]|'[^']*'|"[^"]*"|\}(?!\}))*\}\}
    | \{%(?:[^%'"]|'[^']*'|"[^"]*"|%(?!\}))*%\}
    | \{\#.*?\#\}
    """,
    re.S | re.X,
)


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


class _Budget:
    __slots__ = ("allocated", "deadline", "steps")

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.allocated = 0
        self.steps = 0


_local = threading.local()


def _budget() -> _Budget:
    budget = getattr(_local, "budget", None)
    if budget is None:
        raise RenderLimitExceeded("templates are rendered only through campaigns.sandbox.render")
    return budget


def _tick(budget: _Budget) -> None:
    budget.steps += 1
    if budget.steps > MAX_ITERATIONS:
        raise RenderLimitExceeded(
            f"the template runs more than {MAX_ITERATIONS:,} loop steps or calls"
        )
    if time.monotonic() > budget.deadline:
        raise RenderLimitExceeded(f"the template takes longer than {RENDER_SECONDS:g} s to render")


def _charge(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise RenderLimitExceeded(
            f"the template makes a value of {size:,} characters (at most {MAX_VALUE_CHARS:,})"
        )
    budget = _budget()
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


# Operators -------------------------------------------------------------------------------------


def _mul(left: Any, right: Any) -> Any:
    if isinstance(left, int) and _size(right):
        left, right = right, left
    if _size(left) and isinstance(right, int):
        _charge(len(left) * max(right, 0))
    elif (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise RenderLimitExceeded("the template computes a number that is too large")
    return left * right


def _pow(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and left.bit_length() * right > MAX_INT_BITS
    ):
        raise RenderLimitExceeded("the template computes a number that is too large")
    return left**right


def _add(left: Any, right: Any) -> Any:
    if _size(left) and _size(right):
        _charge(len(left) + len(right))
    result = left + right
    _check_int(result)
    return result


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_format_string(left)
        result = left % right
        _charge(len(result))
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
            _charge(size)
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
            _charge(size)
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


def _guarded_filters(filters: dict) -> dict:
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


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitExceeded(f"range() gives at most {MAX_RANGE:,} numbers")
    return numbers


class _Namespace(Namespace):
    """`namespace()` whose assignments are charged: `{% set ns.s = ns.s ~ ns.s %}` in a loop
    cannot double a string thirty times."""

    def __setitem__(self, name: str, value: Any) -> None:
        size = _size(value)
        if size:
            _charge(size)
        _check_int(value)
        super().__setitem__(name, value)


# Attribute allowlist ---------------------------------------------------------------------------

_STR_ATTRIBUTES = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "isalnum",
        "isalpha",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    }
)
_DICT_ATTRIBUTES = frozenset({"get", "items", "keys", "values"})
_LOOP_ATTRIBUTES = frozenset(
    {
        "index",
        "index0",
        "revindex",
        "revindex0",
        "first",
        "last",
        "length",
        "depth",
        "depth0",
        "previtem",
        "nextitem",
        "cycle",
        "changed",
    }
)
_CYCLER_ATTRIBUTES = frozenset({"next", "reset", "current"})


# Objects a template can reach but that are no text: printing them would put a Python repr
# ("<class 'jinja2.utils.Cycler'>", "<Namespace {...}>") into a mail. They print nothing.
_NOT_TEXT = (Cycler, Joiner, Namespace, LoopContext, Macro, type)


def _printable(value: Any) -> Any:
    """Helpers and callables print nothing, never a repr."""
    if isinstance(value, _NOT_TEXT) or (callable(value) and not isinstance(value, Undefined)):
        return ""
    return value


def _finalize(value: Any) -> Any:
    """Every printed value passes here: helpers and callables print nothing (never a repr);
    large values are charged (literal text is charged by the loops that repeat it), so the
    output stays bounded without checking every chunk."""
    value = _printable(value)
    if isinstance(value, str):
        if len(value) > 1000:
            _charge(len(value))
    elif isinstance(value, (list, tuple, dict)):
        _charge(8 * len(value))
    return value


def _loop_guard(iterable: Iterable, static_size: int) -> Iterator:
    """Iterate with a deadline and a step cap; each step is charged the loop body's literal
    text, so what a loop prints counts against the budget without reading the output."""
    budget = _budget()
    for item in iterable:
        budget.steps += 1
        budget.allocated += static_size
        if (
            budget.steps > MAX_ITERATIONS
            or budget.allocated > MAX_ALLOCATED
            or time.monotonic() > budget.deadline
        ):
            _tick(budget)
            _charge(0)
        yield item


@pass_eval_context
def _concat_guard(eval_ctx, parts: list) -> str:
    """`a ~ b`, with the size checked before joining."""
    strings = [p if isinstance(p, str) else str(p) for p in parts]
    _charge(sum(map(len, strings)))
    return markup_join(parts) if eval_ctx.autoescape else str_join(strings)


# The guards are filters, not globals: a template cannot rebind a filter, and a filter is called
# directly rather than through the sandbox's `call` (a loop costs one function call more).
_LOOP_FILTER = "_mlm_loop"
_CONCAT_FILTER = "_mlm_concat"
_TEXT_FILTER = "_mlm_text"
_PLAIN = (nodes.TemplateData, nodes.Const)


class _Guard(NodeTransformer):
    """Route every loop and every `~` through the checked helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        static = sum(
            len(data.data) for child in node.body for data in child.find_all(nodes.TemplateData)
        )
        node.iter = nodes.Filter(
            node.iter,
            _LOOP_FILTER,
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
        return nodes.Filter(items, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        """Jinja computes a printed expression of constants (`'abc'.upper`) while compiling,
        and escapes it before `finalize` sees it; such expressions pass `_printable` first."""
        self.generic_visit(node)
        node.nodes = [
            child
            if isinstance(child, _PLAIN) or any(child.find_all(nodes.Name))
            else nodes.Filter(child, _TEXT_FILTER, [], [], None, None, lineno=child.lineno)
            for child in node.nodes
        ]
        return node


_CONSTANT_FILTERS_REFUSED = frozenset({"random"})
_NOT_FOLDED = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.ContextReference,
    nodes.DerivedContextReference,
    nodes.NSRef,
    nodes.Block,
    nodes.Extends,
)


class _Fold(NodeTransformer):
    """Render once what is the same for every recipient of a campaign: printed values and
    loops that read only the campaign's constants (`unit`, `campaign`, `dm_type`)."""

    def __init__(self, constants: dict[str, Any], *, html: bool, strict: bool) -> None:
        self.constants = constants
        self.html = [html]
        self.strict = strict

    def _foldable(self, node: nodes.Node) -> bool:
        if isinstance(node, _NOT_FOLDED) or any(node.find_all(_NOT_FOLDED)):
            return False
        loops = list(node.find_all(nodes.For))
        if isinstance(node, nodes.For):
            loops.append(node)
        bound = {"loop"} if loops else set()
        for loop in loops:
            targets = [loop.target, *loop.target.find_all(nodes.Name)]
            bound.update(n.name for n in targets if isinstance(n, nodes.Name))
        names = list(node.find_all(nodes.Name))
        if not names:
            return False  # a literal: nothing to gain
        for name in names:
            if name.ctx == "load" and name.name not in self.constants and name.name not in bound:
                return False
        for call in node.find_all(nodes.Call):
            if not isinstance(call.node, nodes.Getattr):
                return False  # only methods of values (str.upper…), no macros or globals
        for filter_ in node.find_all(nodes.Filter):
            if filter_.name in _CONSTANT_FILTERS_REFUSED:
                return False
        return True

    def _render(self, body: list[nodes.Node], lineno: int) -> str | None:
        env = environment(html=self.html[-1], strict=self.strict)
        tree = nodes.Template(body, lineno=lineno)
        tree.set_environment(env)
        try:
            template = env.template_class.from_code(env, env.compile(tree), env.make_globals(None))
            return render(template, self.constants)
        except (RenderError, TemplateError, RecursionError, TypeError, ValueError):
            return None  # left for the per-recipient render, which reports it with its line

    def visit_ScopedEvalContextModifier(self, node: nodes.Node) -> nodes.Node:
        autoescape = self.html[-1]
        for option in node.options:
            if option.key == "autoescape" and isinstance(option.value, nodes.Const):
                autoescape = bool(option.value.value)
        self.html.append(autoescape)
        try:
            return self.generic_visit(node)
        finally:
            self.html.pop()

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        folded = []
        for child in node.nodes:
            text = None
            if not isinstance(child, nodes.TemplateData) and self._foldable(child):
                text = self._render([nodes.Output([child], lineno=child.lineno)], child.lineno)
            if text is None:
                folded.append(self.visit(child))
            else:
                folded.append(nodes.TemplateData(text, lineno=child.lineno))
        node.nodes = folded
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        if self._foldable(node):
            text = self._render([node], node.lineno)
            if text is not None:
                return nodes.Output([nodes.TemplateData(text, lineno=node.lineno)])
        return self.generic_visit(node)


class CheckUndefined(StrictUndefined):
    """The content check's undefined: printing or looping over a missing name fails (a typo,
    a recipient without a first name and no `default`), testing it does not
    (`{% if attributes.programme %}` is how a template handles optional data)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


class MailSandbox(SandboxedEnvironment):
    """The sandbox with resource limits (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, html: bool, strict: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=CheckUndefined if strict else ChainableUndefined,
            # Constant folding would run template code at compile time, outside any budget.
            optimized=False,
            auto_reload=False,
            cache_size=0,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        self.binop_table = {**self.binop_table, "*": _mul, "**": _pow, "+": _add, "%": _mod}
        self.filters = _guarded_filters(self.filters)
        self.filters.update(
            {_LOOP_FILTER: _loop_guard, _CONCAT_FILTER: _concat_guard, _TEXT_FILTER: _printable}
        )
        self.globals.pop("lipsum", None)
        self.globals.update(range=_range, namespace=_Namespace)
        self._guard = _Guard()

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        tree = self._guard.visit(tree)
        tree.set_environment(self)
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        if isinstance(obj, str):
            return attr in _STR_ATTRIBUTES
        if isinstance(obj, dict):
            return attr in _DICT_ATTRIBUTES
        if isinstance(obj, LoopContext):
            return attr in _LOOP_ATTRIBUTES
        if isinstance(obj, Cycler):
            return attr in _CYCLER_ATTRIBUTES
        if isinstance(obj, Undefined):
            return True  # ChainableUndefined: `attributes.a.b` of a recipient without `a`
        return isinstance(obj, Namespace)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Template data are plain dicts: `unit.name`, `attributes.programme` read keys first
        # (a recipient attribute called "items" wins over the dict method), and fast.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> None:
        # str.format and format_map are not on the allowlist: refuse them rather than wrap them.
        return None

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"the attribute {attribute!r} of a {type(obj).__name__} value is not available "
            "in mail templates"
        )

    def call(__self, __context, __obj, *args, **kwargs):
        budget = _budget()
        budget.steps += 1
        if budget.steps > MAX_ITERATIONS or time.monotonic() > budget.deadline:
            _tick(budget)
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} cannot be called in mail templates")
        return __context.call(__obj, *args, **kwargs)


_ENVIRONMENTS: dict[tuple[bool, bool], MailSandbox] = {}


def environment(*, html: bool, strict: bool) -> MailSandbox:
    """The shared sandbox for HTML (autoescaped) or text, strict (checks) or lenient (sending)."""
    key = (html, strict)
    if key not in _ENVIRONMENTS:
        _ENVIRONMENTS[key] = MailSandbox(html=html, strict=strict)
    return _ENVIRONMENTS[key]


def _shadowed(tree: nodes.Template) -> set[str]:
    """Names the template assigns or takes as parameters anywhere (never folded)."""
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx in {"store", "param"}} | {
        n.name for n in tree.find_all(nodes.NSRef)
    }


def compile_template(
    source: str,
    *,
    html: bool,
    strict: bool,
    part: str = "",
    constants: dict[str, Any] | None = None,
) -> Template:
    """Compile a unit's template, or raise RenderError naming the line.

    With `constants` (the variables every recipient of a campaign shares), what reads only them
    is rendered now, once, and not again per recipient.
    """
    if len(source) > MAX_SOURCE_CHARS:
        raise RenderLimitExceeded(
            f"the template is {len(source):,} characters long (at most {MAX_SOURCE_CHARS:,})",
            part=part,
        )
    env = environment(html=html, strict=strict)
    try:
        tree = env.parse(source)
        if constants:
            shadowed = _shadowed(tree)
            usable = {k: v for k, v in constants.items() if k not in shadowed}
            tree = _Fold(usable, html=html, strict=strict).visit(tree)
            tree.set_environment(env)
        return env.template_class.from_code(env, env.compile(tree), env.make_globals(None))
    except TemplateSyntaxError as error:
        raise RenderError(error.message or "syntax error", part=part, lineno=error.lineno) from None
    except (TemplateError, RecursionError, ValueError) as error:
        raise RenderError(str(error), part=part) from None


def _template_lineno(template: Template, error: BaseException) -> int | None:
    tb = error.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_globals.get("__jinja_template__") is template or (
            tb.tb_frame.f_code.co_filename == "<template>"
        ):
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return None
    try:
        return template.get_corresponding_lineno(lineno)
    except Exception:  # pragma: no cover - debug info missing
        return None


def render(template: Template, variables: dict[str, Any], *, part: str = "") -> str:
    """Render within the limits; raise RenderError (with the template line) on any failure."""
    previous = getattr(_local, "budget", None)
    _local.budget = _Budget(RENDER_SECONDS)
    try:
        output = "".join(template.root_render_func(template.new_context(variables)))
        if len(output) > MAX_OUTPUT_CHARS:
            raise RenderLimitExceeded(f"the output passes {MAX_OUTPUT_CHARS:,} characters")
        return output
    except RenderLimitExceeded as error:
        if not error.part:
            error = RenderLimitExceeded(
                error.detail, part=part, lineno=_template_lineno(template, error)
            )
        raise error from None
    except RenderError:
        raise
    except SecurityError as error:
        raise RenderError(
            f"not allowed: {error}", part=part, lineno=_template_lineno(template, error)
        ) from None
    except UndefinedError as error:
        raise RenderError(
            f"{error.message}", part=part, lineno=_template_lineno(template, error)
        ) from None
    except RecursionError:
        raise RenderLimitExceeded("the template calls itself too deeply", part=part) from None
    except MemoryError:
        raise RenderLimitExceeded("the template needs too much memory", part=part) from None
    except Exception as error:
        raise RenderError(
            f"{type(error).__name__}: {error}", part=part, lineno=_template_lineno(template, error)
        ) from None
    finally:
        _local.budget = previous
