"""timestamptz text without an offset, in a session whose TimeZone is not UTC."""

from __future__ import annotations

import pytest

from rules.pgtypes import (
    TimestamptzWithoutOffset,
    codec_for,
    is_utc_zone,
    timestamptz_offset_required,
)


@pytest.mark.parametrize(
    "setting", ["UTC", "Etc/UTC", "utc", "GMT", "Etc/GMT-0", "Zulu", "Universal", "<+00>-00", "+00"]
)
def test_utc_settings(setting: str) -> None:
    assert is_utc_zone(setting)


@pytest.mark.parametrize(
    "setting", ["Europe/Berlin", "America/New_York", "<+05>-05", "+05:30", "localtime", "CET", ""]
)
def test_other_settings(setting: str) -> None:
    assert not is_utc_zone(setting)


@pytest.mark.parametrize(
    "text", [b"2024-01-01 10:00", b"2024-01-01T10:00:00.5", b"2024-01-01", b" 2024-01-01 10:00 "]
)
def test_without_offset_refused(text: bytes) -> None:
    with pytest.raises(TimestamptzWithoutOffset) as refused:
        timestamptz_offset_required().to_canonical(text, 0)
    assert refused.value.sqlstate == "0A000"
    assert "2024" not in str(refused.value)  # never the value
    # The ordinary codec reads it as UTC: what a UTC session means by it.
    assert codec_for("timestamptz").to_canonical(text, 0).endswith(b"+00")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (b"2024-01-01 10:00+01", b"2024-01-01 09:00:00+00"),
        (b"2024-01-01 10:00Z", b"2024-01-01 10:00:00+00"),
        (b"2024-01-01 10:00:00-05:30", b"2024-01-01 15:30:00+00"),
        (b"2024-07-01 10:00 Europe/Berlin", b"2024-07-01 08:00:00+00"),
        (b"2024-01-01 10:00 UTC", b"2024-01-01 10:00:00+00"),
        (b"epoch", b"1970-01-01 00:00:00+00"),
        (b"infinity", b"infinity"),
    ],
)
def test_with_offset_read_as_before(text: bytes, canonical: bytes) -> None:
    assert timestamptz_offset_required().to_canonical(text, 0) == canonical
    assert codec_for("timestamptz").to_canonical(text, 0) == canonical


def test_binary_is_unaffected() -> None:
    binary = (0).to_bytes(8, "big", signed=True)  # 2000-01-01 00:00 UTC
    assert timestamptz_offset_required().to_canonical(binary, 1) == b"2000-01-01 00:00:00+00"
