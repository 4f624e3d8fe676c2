"""The plugin system: hooks are documented, built-ins load from the entry-point group."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from libdcron import hookspecs
from libdcron.abc import Interpreter
from libdcron.errors import PluginError
from libdcron.hookspecs import hookimpl
from libdcron.plugins import Plugins


def hookspec_functions() -> list[Any]:
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("dcron_")]


def test_every_hook_is_documented_and_says_whether_it_is_firstresult() -> None:
    specs = hookspec_functions()
    assert {f.__name__ for f in specs} == {
        "dcron_interpreters",
        "dcron_object_store",
        "dcron_document_store",
        "dcron_election",
    }
    for func in specs:
        doc = inspect.getdoc(func) or ""
        assert len(doc) > 40, f"{func.__name__} has no real docstring"
        opts = func.libdcron_spec
        if opts.get("firstresult"):
            assert "firstresult" in doc, f"{func.__name__}: say that it is firstresult"
        assert func.__annotations__.get("return"), f"{func.__name__} has no return type"


def test_builtins_are_registered_by_import_under_their_entry_point_names() -> None:
    from importlib.metadata import entry_points

    from libdcron.plugins import BUILTINS

    plugins = Plugins()
    names = [name for name, _ in plugins.pm.list_name_plugin()]
    # Registered first, in order, by import; their entry points were skipped (same names).
    assert names[: len(BUILTINS)] == [name for name, _ in BUILTINS]
    assert len(names) == len(set(names))
    declared = {ep.name: ep.value for ep in entry_points(group="libdcron") if ep.name.startswith("dcron-")}
    assert declared == dict(BUILTINS)  # pyproject.toml and BUILTINS agree
    assert {"python", "ruby", "sh"} <= set(plugins.interpreters())
    # Without entry points the built-ins still load: a source checkout runs.
    assert {"python", "ruby", "sh"} <= set(Plugins(load_entry_points=False, builtins=True).interpreters())


def test_external_plugins_are_asked_before_the_builtins() -> None:
    class LocalOverride:
        @hookimpl
        def dcron_object_store(self, url: str, options: Mapping[str, Any]) -> Any:
            return "override" if url.startswith("file://") else None

    plugins = Plugins(extra=[LocalOverride()])
    assert plugins.object_store("file:///tmp/x", {}) == "override"


def test_unknown_urls_are_refused_clearly() -> None:
    plugins = Plugins()
    with pytest.raises(PluginError, match="no object-store plugin handles 'ftp://x'"):
        plugins.object_store("ftp://x", {})
    with pytest.raises(PluginError, match="no document-store plugin handles 'mongodb://x'"):
        plugins.document_store("mongodb://x", {})
    with pytest.raises(PluginError, match="no election plugin handles 'etcd://x'"):
        plugins.election("etcd://x", {})


class Perl(Interpreter):
    name = "perl"
    suffix = ".pl"

    def command(self, script_path: str) -> list[str]:
        return ["perl", script_path]


class PythonOverride(Interpreter):
    name = "python"

    def command(self, script_path: str) -> list[str]:
        return ["/opt/python", script_path]


class ExtraPlugin:
    @hookimpl
    def dcron_interpreters(self) -> list[Interpreter]:
        return [Perl(), PythonOverride()]

    @hookimpl
    def dcron_election(self, url: str, options: Mapping[str, Any]) -> None:
        return None


def test_a_later_plugin_adds_and_replaces_interpreters() -> None:
    plugins = Plugins(extra=[ExtraPlugin()])
    interps = plugins.interpreters()
    assert interps["perl"].command("x") == ["perl", "x"]
    assert interps["python"].command("x") == ["/opt/python", "x"]
    assert interps["ruby"].command("x")[-1] == "x"


def test_interpreters_are_kept_between_calls_until_a_plugin_registers() -> None:
    plugins = Plugins()
    first = plugins.interpreters()
    assert plugins.interpreters()["sh"] is first["sh"]  # what it looked up (its PATH) is kept
    plugins.interpreters().pop("sh")  # a caller's copy: the plugins' own is untouched
    assert "sh" in plugins.interpreters()
    plugins.register(ExtraPlugin())
    again = plugins.interpreters()
    assert "perl" in again and again["python"].command("x") == ["/opt/python", "x"]
