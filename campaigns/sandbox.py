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
import time
from functools import lru_cache
from types import CodeType
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
)
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import Cycler, Namespace
from jinja2.visitor import NodeTransformer

from campaigns.sandbox_limits import (
    CONCAT_FILTER,
    LOOP_FILTER,
    MAX_ITERATIONS,
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    TEXT_FILTER,
    ChargedNamespace,
    Guard,
    RenderError,
    RenderLimitExceeded,
    add,
    begin_render,
    concat_guard,
    current_budget,
    end_render,
    finalize,
    guarded_filters,
    limited_range,
    loop_guard,
    mod,
    mul,
    power,
    printable,
    tick,
)

__all__ = ["JINJA_CONSTRUCT", "RenderError", "RenderLimitExceeded", "compile_template", "render"]

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
            finalize=finalize,
        )
        self.binop_table = {**self.binop_table, "*": mul, "**": power, "+": add, "%": mod}
        self.filters = guarded_filters(self.filters)
        self.filters.update(
            {LOOP_FILTER: loop_guard, CONCAT_FILTER: concat_guard, TEXT_FILTER: printable}
        )
        self.globals.pop("lipsum", None)
        self.globals.update(range=limited_range, namespace=ChargedNamespace)
        self._guard = Guard()

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
        budget = current_budget()
        budget.steps += 1
        if budget.steps > MAX_ITERATIONS or time.monotonic() > budget.deadline:
            tick(budget)
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


@lru_cache(maxsize=64)
def _compiled(source: str, *, html: bool, strict: bool) -> CodeType:
    """The code of a template that folds no constants: the same source always compiles to the
    same code, and a layout is compiled again on every save, check and preview."""
    env = environment(html=html, strict=strict)
    return env.compile(env.parse(source))


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
        if constants:
            tree = env.parse(source)
            shadowed = _shadowed(tree)
            usable = {k: v for k, v in constants.items() if k not in shadowed}
            tree = _Fold(usable, html=html, strict=strict).visit(tree)
            tree.set_environment(env)
            code = env.compile(tree)
        else:
            code = _compiled(source, html=html, strict=strict)
        return env.template_class.from_code(env, code, env.make_globals(None))
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
    previous = begin_render()
    try:
        return _render(template, variables, part)
    finally:
        end_render(previous)


def _render(template: Template, variables: dict[str, Any], part: str) -> str:
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
