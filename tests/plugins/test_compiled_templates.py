"""The strategy's compiled-template cache (plugins/plugin_utils/compiled_templates.py).

Each check runs in a Python process of its own, since the cache changes ansible-core's Jinja
environment class for the whole process. Ansible's own templating engine renders, as tasks do;
a count of Jinja's code generation says how often a template was compiled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from mlops_testkit import ROOT

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys

    import jinja2
    from ansible._internal._templating._engine import TemplateEngine
    from ansible._internal._datatag._tags import TrustedAsTemplate

    if sys.argv[1] == "cached":
        spec = importlib.util.spec_from_file_location("compiled_templates", sys.argv[2])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.keep_compiled_templates()

    generated = []
    generate = jinja2.Environment._generate
    def counting(self, *args, **kwargs):
        generated.append(1)
        return generate(self, *args, **kwargs)
    jinja2.Environment._generate = counting

    def trusted(text):
        return TrustedAsTemplate().tag(text)

    results = {}
    def render(label, text, **variables):
        # A new engine, and so a new Jinja environment, for every call: as for every task and host.
        engine = TemplateEngine(variables=variables)
        results.setdefault(label, []).append(engine.template(trusted(text)))

    for host in ("one", "two", "three"):
        render("template", "{{ name | upper }} {{ items | length }}", name=host, items=[1, 2])
        render("condition", str(TemplateEngine(variables={"x": host}).evaluate_conditional(trusted("x == 'two'"))))
        render("raw", "{% raw %}{{ x }}{% endraw %}")
        overlay = "#jinja2:variable_start_string:'[[', variable_end_string:']]'\\n"
        render("overlay", overlay + "[[ name ]] {{ name }}", name=host)
        # The same text without the overlay: compiled with the default delimiters.
        render("default", "[[ name ]] {{ name }}", name=host)
        render("plain", "{{ name }}", name=host)
    print(json.dumps({"generated": len(generated), "results": results}))
    """
)


def run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(ROOT / "plugins/plugin_utils/compiled_templates.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_each_template_is_compiled_once_and_renders_as_without_the_cache() -> None:
    cached, fresh = run("cached"), run("fresh")
    assert cached["results"] == fresh["results"]
    assert cached["results"]["template"] == ["ONE 2", "TWO 2", "THREE 2"]
    assert cached["results"]["overlay"] == ["one {{ name }}", "two {{ name }}", "three {{ name }}"]
    assert cached["results"]["default"] == ["[[ name ]] one", "[[ name ]] two", "[[ name ]] three"]
    assert cached["results"]["raw"] == ["{{ x }}"] * 3
    # Three hosts: every template and condition compiled for each without the cache, once with it.
    assert fresh["generated"] >= 3 * 5, fresh
    assert cached["generated"] * 3 == fresh["generated"], (cached, fresh)
