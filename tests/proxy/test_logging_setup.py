"""proxy.logging_setup: JSON lines and text lines carry the extra fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from proxy.logging_setup import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_have_the_standard_and_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    log = logging.getLogger("proxy.server")
    log.info("connection closed after %d ms", 12, extra={"conn_id": 7, "user": "app"})
    log.debug("not shown at info")
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "proxy.server"
    assert entry["msg"] == "connection closed after 12 ms"
    assert (entry["conn_id"], entry["user"]) == (7, "app")
    assert entry["ts"].endswith("Z")
    assert list(entry)[:4] == ["ts", "level", "logger", "msg"]


def test_json_includes_the_exception() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("x").exception("failed")
    entry = json.loads(stream.getvalue())
    assert "ValueError: bad" in entry["exc"]


def test_text_lines_show_extras_as_key_value() -> None:
    stream = io.StringIO()
    configure_logging("text", "debug", stream=stream)
    logging.getLogger("proxy.session").warning(
        "upstream closed", extra={"conn_id": 3, "client": "10.0.0.1:5000", "note": "two words"}
    )
    line = stream.getvalue().rstrip("\n")
    assert " WARNING proxy.session: upstream closed " in line
    assert line.endswith('conn_id=3 client=10.0.0.1:5000 note="two words"')


def test_configuring_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("text", "info", stream=first)
    configure_logging("json", "error", stream=second)
    log = logging.getLogger("y")
    log.warning("dropped at error level")
    log.error("kept")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "kept"


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "loud")])
def test_bad_settings_are_rejected(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        configure_logging(fmt, level)
