"""Node settings are checked for type and range, and plugin options parse in one place."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from libdcron import object_base as storage_base
from libdcron.config import NodeSettings
from libdcron.daemon import _settings
from libdcron.errors import ValidationError
from libdcron.options import (
    flag_option,
    integer_option,
    number_option,
    parse_flag,
    parse_integer,
    parse_number,
)


def settings(tmp_path: Path, **values: Any) -> NodeSettings:
    return NodeSettings(data_dir=tmp_path, **values).resolved()


# -- settings ---------------------------------------------------------------------------------


def test_defaults_resolve(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.capacity == 4 and s.store == f"sqlite://{tmp_path.resolve() / 'dcron.sqlite3'}"
    assert isinstance(s.lookback, float) and isinstance(s.lead, float)


def test_a_toml_int_will_do_for_a_float_setting(tmp_path: Path) -> None:
    s = settings(tmp_path, lookback=60, lead=2)
    assert s.lookback == 60.0 and isinstance(s.lookback, float)
    assert s.lead == 2.0 and isinstance(s.lead, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"capacity": "4"}, "setting capacity must be an integer, got '4'"),
        ({"capacity": 4.0}, "setting capacity must be an integer, got 4.0"),
        ({"capacity": True}, "setting capacity must be an integer, got True"),
        ({"capacity": 0}, "setting capacity must be at least 1, got 0"),
        ({"log_cap": "10MiB"}, "setting log_cap must be an integer, got '10MiB'"),
        ({"log_cap": -1}, "setting log_cap must be at least 0, got -1"),
        ({"lookback": "300"}, "setting lookback must be a number of seconds, got '300'"),
        ({"lookback": 0}, "setting lookback must be a positive, finite number of seconds, got 0"),
        ({"lookback": math.nan}, "setting lookback must be a positive, finite number"),
        ({"lead": math.inf}, "setting lead must be a positive, finite number"),
        ({"lead": -5.0}, "setting lead must be a positive, finite number"),
        ({"lead": False}, "setting lead must be a number of seconds, got False"),
        ({"listen": 7571}, "setting listen must be a string, got 7571"),
        ({"store": ["sqlite:///x"]}, "setting store must be a string, got ['sqlite:///x']"),
        ({"objects": 1}, "setting objects must be a string"),
        ({"election": {}}, "setting election must be a string"),
        ({"advertise": 1}, "setting advertise must be a string"),
        ({"node_id": 3}, "setting node_id must be a string"),
        ({"cluster_key": 3}, "setting cluster_key must be a string"),
        ({"keys_dir": 3}, "setting keys_dir must be a path"),
        ({"client_keys": [1]}, "setting client_keys must be a string or a list of strings"),
        ({"allowed_objects": 5}, "setting allowed_objects must be a string or a list of strings"),
        ({"options": "x"}, "setting options must be a table, got 'x'"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(tmp_path, **values)
    assert message in str(caught.value)


def test_a_bad_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="setting data_dir must be a path, got 5"):
        NodeSettings(data_dir=5).resolved()  # type: ignore[arg-type]


def test_lists_and_paths_are_accepted(tmp_path: Path) -> None:
    s = settings(tmp_path, keys_dir=str(tmp_path / "k"), client_keys=["a", "b"], node_keys="c, d")
    assert s.keys_dir == (tmp_path / "k").resolve()
    assert s.client_keys == ["a", "b"] and s.node_keys == ["c", "d"]


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dcron.toml"
    path.write_text(text)
    return str(path)


def test_the_config_file_is_checked_too(tmp_path: Path) -> None:
    flags = {"data_dir": str(tmp_path)}
    path = _toml(tmp_path, '[node]\ncapacity = "4"\n')
    with pytest.raises(ValidationError, match="setting capacity must be an integer, got '4'"):
        _settings(path, flags, ())
    path = _toml(tmp_path, '[node]\noptions = "session_timeout=4"\n')
    with pytest.raises(ValidationError, match="setting options must be a table"):
        _settings(path, flags, ())
    path = _toml(tmp_path, "[node]\ncapacity = 8\nlookback = 60\n[node.options]\nsession_timeout = 4\n")
    s = _settings(path, flags, ("election_poll_interval=0.2",))
    assert s.capacity == 8 and s.lookback == 60.0
    assert s.options == {"session_timeout": 4, "election_poll_interval": "0.2"}


# -- plugin options ---------------------------------------------------------------------------


def test_number_option() -> None:
    assert number_option({}, "x", 5) == 5
    assert number_option({"x": ""}, "x", 5) == 5
    assert number_option({"x": None}, "x", 5) == 5
    assert number_option({"x": "2.5"}, "x", 5) == 2.5
    assert number_option({"x": 3}, "x", 5) == 3.0
    assert number_option({"x": " 1e3 "}, "x", 5) == 1000.0
    assert number_option({"x": "0"}, "x", 5) == 0.0  # at least 0 by default


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ("abc", {}, "option couchdb_timeout must be a number, got 'abc'"),
        (True, {}, "option couchdb_timeout must be a number, got True"),
        ([1], {}, "option couchdb_timeout must be a number, got [1]"),
        ("nan", {}, "option couchdb_timeout must be a finite number, got 'nan'"),
        ("inf", {}, "option couchdb_timeout must be a finite number, got 'inf'"),
        ("-1", {}, "option couchdb_timeout must be at least 0, got '-1'"),
        ("0", {"greater_than": 0}, "option couchdb_timeout must be positive, got '0'"),
        ("1", {"greater_than": 2}, "option couchdb_timeout must be greater than 2, got '1'"),
        ("4", {"minimum": 5}, "option couchdb_timeout must be at least 5, got '4'"),
    ],
)
def test_number_option_refusals(value: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        number_option({"couchdb_timeout": value}, "couchdb_timeout", 5, **kwargs)
    assert str(caught.value) == message


def test_storage_base_keeps_number_option() -> None:
    assert storage_base.number_option is number_option
    with pytest.raises(ValidationError, match="option s3_read_timeout must be a number, got 'soon'"):
        storage_base.number_option({"s3_read_timeout": "soon"}, "s3_read_timeout", 60)


def test_integer_option() -> None:
    assert integer_option({}, "n", 3) == 3
    assert integer_option({"n": "7"}, "n", 3) == 7
    assert integer_option({"n": 7}, "n", 3) == 7
    assert integer_option({"n": "8e6"}, "n", 3) == 8_000_000
    assert integer_option({"n": 4.0}, "n", 3) == 4
    for bad in ("2.5", 2.5, "x", True, "nan", "inf", math.inf):
        with pytest.raises(ValidationError, match=re.escape(f"option n must be an integer, got {bad!r}")):
            integer_option({"n": bad}, "n", 3)
    with pytest.raises(ValidationError, match="option n must be at least 1, got '0'"):
        integer_option({"n": "0"}, "n", 3, minimum=1)


def test_flag_option() -> None:
    assert flag_option({}, "f", False) is False
    assert flag_option({"f": ""}, "f", True) is True
    for yes in (True, 1, "1", "true", "Yes", " ON "):
        assert flag_option({"f": yes}, "f", False) is True
    for no in (False, 0, "0", "false", "No", "off"):
        assert flag_option({"f": no}, "f", True) is False
    for bad in ("maybe", 2, 1.5, []):
        with pytest.raises(ValidationError, match=re.escape(f"option f must be true or false, got {bad!r}")):
            flag_option({"f": bad}, "f", False)


def test_parsers_name_what_they_parse() -> None:
    assert parse_number("timeout", "1.5", greater_than=0) == 1.5
    assert parse_integer("size", "12", minimum=1) == 12
    assert parse_flag("insecure", "true") is True
    with pytest.raises(ValidationError, match=r"^'sqlite:///x': timeout must be a number, got 'soon'$"):
        parse_number("'sqlite:///x': timeout", "soon")


# -- the plugins use them ---------------------------------------------------------------------


def test_the_plugins_refuse_bad_options_with_one_message(tmp_path: Path) -> None:
    import dcron_plugins.election_file as filelock
    import dcron_plugins.election_zookeeper as zookeeper
    import dcron_plugins.store_couchdb as couchdb
    import dcron_plugins.store_sqlite as sqlite

    couch, lock, zk = "http://127.0.0.1:5984/x", f"file://{tmp_path}/e", "zk://127.0.0.1:1/x"
    cases: list[tuple[Any, str, dict[str, Any], str]] = [
        (couchdb.dcron_document_store, couch, {"couchdb_timeout": "abc"}, "couchdb_timeout"),
        (couchdb.dcron_document_store, couch, {"couchdb_timeout": "0"}, "couchdb_timeout"),
        (couchdb.dcron_document_store, couch, {"couchdb_verify": "/no/ca.pem"}, "couchdb_verify"),
        (couchdb.dcron_document_store, couch + "?timeout=nan", {}, "timeout"),
        (sqlite.dcron_document_store, f"sqlite://{tmp_path}/a.db?timeout=abc", {}, "timeout"),
        (filelock.dcron_election, lock, {"election_poll_interval": "abc"}, "election_poll_interval"),
        (filelock.dcron_election, lock, {"election_poll_interval": "-1"}, "election_poll_interval"),
        (zookeeper.dcron_election, zk, {"session_timeout": "abc"}, "session_timeout"),
        (zookeeper.dcron_election, zk, {"zk_connect_timeout": "inf"}, "zk_connect_timeout"),
    ]
    for hook, url, options, name in cases:
        with pytest.raises(ValidationError, match=name):
            hook(url=url, options=options)


def test_couchdb_verify_values() -> None:
    from dcron_plugins.store_couchdb import CouchDBDocumentStore

    def verify(options: dict[str, Any]) -> Any:
        store = CouchDBDocumentStore.from_url("http://127.0.0.1:5984/x", options)
        return store._server.resource.session.verify

    assert verify({}) is True
    assert verify({"couchdb_verify": "false"}) is False
    assert verify({"couchdb_verify": False}) is False
    assert verify({"couchdb_verify": __file__}) == __file__  # an existing file: a CA bundle


def test_storage_plugins_refuse_bad_options() -> None:
    from dcron_plugins.storage_s3 import make_filesystem as s3_filesystem
    from dcron_plugins.storage_swift import make_filesystem as swift_filesystem

    with pytest.raises(ValidationError, match="option s3_retries must be an integer, got 'x'"):
        s3_filesystem({"s3_retries": "x"})
    with pytest.raises(ValidationError, match="option s3_connect_timeout must be a number, got 'soon'"):
        s3_filesystem({"s3_connect_timeout": "soon"})
    with pytest.raises(ValidationError, match="option swift_insecure must be true or false, got 'perhaps'"):
        swift_filesystem({"swift_insecure": "perhaps"})
    with pytest.raises(ValidationError, match="option swift_timeout must be a number, got 'abc'"):
        swift_filesystem({"swift_timeout": "abc"})
