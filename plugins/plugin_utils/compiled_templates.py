"""Each template and condition is compiled once per run in the controller, not once per host.

ansible-core 2.19 compiles every template and condition it renders afresh (a new Jinja
environment for each templating engine, and `from_string`, which Jinja caches nowhere): for each
task, for each host. Since the strategy runs the tasks of a fleet's hosts in the controller's
process (plugin_utils/side_by_side.py), that process does the compiling for every host, one
after the other, and compiling was about a quarter of its time in a no-change `site.yml` on four
hosts (BENCHMARKS.md).

What Jinja compiles is a Python code object, which depends on the template's text and on the
environment's compile-time settings only: it reaches the environment, its filters and tests
through the name `environment` when it runs (that is how Jinja's own bytecode cache reuses code
across environments). So the code is kept here, keyed by the text and by every setting that
shapes it, and each environment builds its template from the kept code as `from_string` does.
Ansible's tags on a template's text (its origin, its trust) are not part of the code: the code
generator writes constants with `repr`, and the trust check happens before any compile.
"""

from __future__ import annotations

import functools
import typing as t

from ansible._internal._templating import _jinja_bits
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.utils import LRUCache, internalcode

# Code objects by (settings, kind, text); the least recently used go first.
_codes = LRUCache(4096)
# The key under which the expression being compiled keeps its code (set by compile_expression).
_expression_key: list[t.Any] = []

_JINJA_COMPILE = AnsibleEnvironment.compile
_JINJA_COMPILE_EXPRESSION = AnsibleEnvironment.compile_expression


def _settings(env: AnsibleEnvironment) -> tuple[t.Any, ...] | None:
    """Everything of ENV and of the moment that shapes compiled code; None: do not keep it."""
    if env._debuggable_template_source:  # the code then carries a breakpoint and the source's path
        return None
    compile_context = _jinja_bits._TemplateCompileContext.current(optional=True)
    return (
        type(env),
        env.code_generator_class,
        env.context_class,
        env.optimized,
        env.autoescape,
        env.finalize,
        env.is_async,
        tuple(env.extensions),
        tuple(getattr(env, name) for name in _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES),
        compile_context.escape_backslashes if compile_context else None,
        _jinja_bits._TemplateConfig.allow_embedded_templates,
    )


@internalcode
def _compile(
    env: AnsibleEnvironment,
    source: t.Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> t.Any:
    """Environment.compile, the code of a template's text kept, and that of an expression."""
    if isinstance(source, nodes.Template) and _expression_key:
        key = _expression_key.pop()
        _codes[key] = code = _JINJA_COMPILE(env, source, name, filename, raw, defer_init)
        return code
    settings = _settings(env) if isinstance(source, str) and not raw else None
    if settings is None:
        return _JINJA_COMPILE(env, source, name, filename, raw, defer_init)
    key = (settings, "template", str(source), name, filename, defer_init)
    code = _codes.get(key)
    if code is None:
        _codes[key] = code = _JINJA_COMPILE(env, source, name, filename, raw, defer_init)
    return code


@internalcode
def _compile_expression(env: AnsibleEnvironment, source: str, undefined_to_none: bool = True) -> TemplateExpression:
    """Environment.compile_expression, from kept code where this text was compiled before."""
    settings = _settings(env) if isinstance(source, str) else None
    if settings is None:
        return _JINJA_COMPILE_EXPRESSION(env, source, undefined_to_none)
    key = (settings, "expression", str(source))
    code = _codes.get(key)
    if code is None:
        # Jinja parses the expression and compiles it as a template tree: _compile keeps the code.
        _expression_key[:] = [key]
        try:
            return _JINJA_COMPILE_EXPRESSION(env, source, undefined_to_none)
        finally:
            _expression_key.clear()
    # What compile_expression's from_string does with the code.
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    return TemplateExpression(template, undefined_to_none)


@functools.cache
def keep_compiled_templates() -> None:
    """Has this process compile each template and expression once (for each compile setting)."""
    AnsibleEnvironment.compile = _compile  # type: ignore[method-assign]
    AnsibleEnvironment.compile_expression = _compile_expression  # type: ignore[method-assign]
