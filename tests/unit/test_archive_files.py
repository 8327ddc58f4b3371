"""The archive's file format: NDJSON lines, day files, the manifest and its checksums."""

from __future__ import annotations

import argparse
import gzip
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from conveyor.cli import main
from conveyor.retention.archive import parse_age
from conveyor.retention.files import (
    ArchivedJob,
    ArchiveError,
    RunWriter,
    StoredRow,
    decode_line,
    encode_line,
    find_job,
    manifests,
)
from conveyor.settings import Settings, SettingsError
from conveyor.tenancy import InvalidTenantSettingError, parse_retention_days

T0 = datetime(2026, 10, 1, 23, 59, tzinfo=UTC)


def stream(job_id: UUID, n: int, first: int = 1) -> list[StoredRow]:
    # State bytes that are not text: every byte value, newlines included.
    return [StoredRow(job_id, v, f"conveyor.aggregates.job:Job.E{v}",
                      bytes(range(256)) + str(v).encode(), 100 * first + v)
            for v in range(1, n + 1)]


def job(job_id: UUID, version: int, finished_at: datetime) -> ArchivedJob:
    return ArchivedJob(job_id, version, finished_at, "acme")


def test_a_line_gives_back_the_stored_event_exactly() -> None:
    row = stream(uuid4(), 1)[0]

    line = encode_line(row)

    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line) == row


def test_a_run_writes_one_file_per_finish_day_and_a_manifest_that_checks_them(
    tmp_path: Path,
) -> None:
    # Given three jobs, two finished on one day and one on the next
    a, b, c = uuid4(), uuid4(), uuid4()
    writer = RunWriter(tmp_path, "run1", T0)
    writer.add(job(a, 3, T0), stream(a, 3))
    writer.add(job(b, 2, T0 + timedelta(days=1)), stream(b, 2))
    writer.add(job(c, 1, T0 - timedelta(minutes=5)), stream(c, 1))

    # When the run is finished
    manifest = writer.finish()

    # Then there is a file per day, in day order, and nothing half written
    assert [f.name for f in manifest.files] == [
        "2026-10-01.run1.ndjson.gz", "2026-10-02.run1.ndjson.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-10-01.run1.ndjson.gz", "2026-10-02.run1.ndjson.gz", "manifest.run1.json"]
    first, second = manifest.files
    assert [j.job_id for j in first.jobs] == [a, c] and first.events == 4
    assert [j.job_id for j in second.jobs] == [b] and second.events == 2
    assert (manifest.jobs, manifest.events) == (3, 6)
    # And the manifest, read back, holds each file's sha256 and its exact lines
    [read] = manifests(tmp_path)
    assert read == manifest
    for entry in read.files:
        data = (tmp_path / entry.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.bytes
    lines = gzip.decompress((tmp_path / first.name).read_bytes()).splitlines(keepends=True)
    assert [decode_line(line) for line in lines] == stream(a, 3) + stream(c, 1)


def test_a_run_with_no_job_writes_no_manifest(tmp_path: Path) -> None:
    manifest = RunWriter(tmp_path, "empty", T0).finish()

    assert manifest.files == [] and list(tmp_path.iterdir()) == []


def test_a_job_is_found_in_its_latest_copy_and_others_are_not_read(tmp_path: Path) -> None:
    # Given a job archived at version 2 and, after a retry, again at version 4
    a, other = uuid4(), uuid4()
    first = RunWriter(tmp_path, "20261001T000000Z-aaaaaa", T0)
    first.add(job(a, 2, T0), stream(a, 2))
    first.add(job(other, 1, T0), stream(other, 1))
    first.finish()
    second = RunWriter(tmp_path, "20261101T000000Z-bbbbbb", T0 + timedelta(days=31))
    second.add(job(a, 4, T0 + timedelta(days=2)), stream(a, 4, first=7))
    second.finish()

    # Then the later copy is found, and an unknown job finds nothing
    assert find_job(tmp_path, a) == stream(a, 4, first=7)
    assert find_job(tmp_path, other) == stream(other, 1)
    assert find_job(tmp_path, uuid4()) == []


def test_a_damaged_file_is_refused_rather_than_read(tmp_path: Path) -> None:
    a = uuid4()
    writer = RunWriter(tmp_path, "run1", T0)
    writer.add(job(a, 2, T0), stream(a, 2))
    [entry] = writer.finish().files
    path = tmp_path / entry.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ArchiveError, match="does not match its manifest's sha256"):
        find_job(tmp_path, a)


def test_ages_are_whole_days_hours_or_minutes() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("0m") == timedelta(0)
    for bad in ("30", "1.5d", "-1d", "d", "3w"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an age"):
            parse_age(bad)


def test_an_organisations_retention_is_whole_days_or_the_default() -> None:
    assert parse_retention_days("7") == 7
    assert parse_retention_days("default") is None
    for bad in ("0", "1.5", "-3", "week"):
        with pytest.raises(InvalidTenantSettingError, match="--retention-days"):
            parse_retention_days(bad)


def test_the_archive_without_a_directory_says_what_to_set_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.delenv("CONVEYOR_ARCHIVE_DIR", raising=False)

    assert main(["archive", "--older-than", "30d"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("conveyor archive: CONVEYOR_ARCHIVE_DIR is not set: set it to")
    assert err.count("\n") == 1


def test_retention_days_are_whole_days_from_the_environment() -> None:
    assert Settings.from_env({"CONVEYOR_RETENTION_DAYS": "30"}).retention_days == 30
    assert Settings.from_env({}).retention_days is None
    for bad in ("0", "1.5", "x"):
        with pytest.raises(SettingsError, match="CONVEYOR_RETENTION_DAYS must be"):
            Settings.from_env({"CONVEYOR_RETENTION_DAYS": bad})
