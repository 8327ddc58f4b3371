"""The archive's files: gzip NDJSON, one per finish day of a run, and the run's manifest.

A line is one stored event exactly as the events table held it: the job's id, its version,
its topic, its state bytes (base64; the event's timestamp is inside them, as eventsourcing
stores it) and the notification id it had. A run writes each day's file under a temporary
name, fsyncs it, renames it, and writes its manifest (the files, their sha256 and their
jobs) the same way last: a manifest on disk means every file it names is complete, so the
store may delete what it lists (docs/architecture.md §8.4).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson

from conveyor.errors import ConveyorError

FORMAT = "conveyor-archive/1"


@dataclass(frozen=True)
class StoredRow:
    """One row of the events table."""

    job_id: UUID
    version: int
    topic: str
    state: bytes
    notification_id: int


def encode_line(row: StoredRow) -> bytes:
    """The NDJSON line of one stored event."""
    return orjson.dumps({
        "job_id": str(row.job_id), "version": row.version, "topic": row.topic,
        "state": base64.b64encode(row.state).decode(), "notification_id": row.notification_id,
    }) + b"\n"


def decode_line(line: bytes) -> StoredRow:
    """The stored event of one NDJSON line."""
    data = orjson.loads(line)
    return StoredRow(UUID(data["job_id"]), data["version"], data["topic"],
                     base64.b64decode(data["state"]), data["notification_id"])


@dataclass(frozen=True)
class ArchivedJob:
    """What the manifest says of one job: enough to delete it and to find it again."""

    job_id: UUID
    version: int
    finished_at: datetime
    organization: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": str(self.job_id), "version": self.version,
                "finished_at": self.finished_at.isoformat(), "organization": self.organization}

    @classmethod
    def of(cls, data: dict[str, Any]) -> ArchivedJob:
        return cls(UUID(data["id"]), data["version"], datetime.fromisoformat(data["finished_at"]),
                   data["organization"])


@dataclass
class DayFile:
    """One file of a run: the jobs that finished on `day`."""

    name: str
    day: date
    jobs: list[ArchivedJob] = field(default_factory=list)
    events: int = 0
    sha256: str = ""
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "day": self.day.isoformat(), "sha256": self.sha256,
                "bytes": self.bytes, "events": self.events, "job_count": len(self.jobs),
                "jobs": [j.as_dict() for j in self.jobs]}

    @classmethod
    def of(cls, data: dict[str, Any]) -> DayFile:
        return cls(data["name"], date.fromisoformat(data["day"]),
                   [ArchivedJob.of(j) for j in data["jobs"]], data["events"], data["sha256"],
                   data["bytes"])


@dataclass
class Manifest:
    """A run's files; written after them, so it never names a file that is not complete."""

    run: str
    created_at: datetime
    files: list[DayFile]

    @property
    def jobs(self) -> int:
        return sum(len(f.jobs) for f in self.files)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)

    def as_bytes(self) -> bytes:
        return orjson.dumps({"format": FORMAT, "run": self.run,
                             "created_at": self.created_at.isoformat(), "jobs": self.jobs,
                             "events": self.events,
                             "files": [f.as_dict() for f in self.files]},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = orjson.loads(path.read_bytes())
        if data.get("format") != FORMAT:
            raise ArchiveError(f"{path} is not a {FORMAT} manifest")
        return cls(data["run"], datetime.fromisoformat(data["created_at"]),
                   [DayFile.of(f) for f in data["files"]])


def manifest_name(run: str) -> str:
    return f"manifest.{run}.json"


def manifests(directory: Path) -> list[Manifest]:
    """Every run's manifest in the directory, oldest run first."""
    return [Manifest.read(p) for p in sorted(directory.glob(manifest_name("*")))]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable(path: Path, write: Any) -> None:
    """Write `path` through a temporary name, fsynced before and after the rename."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as raw:
        write(raw)
        raw.flush()
        os.fsync(raw.fileno())
    partial.rename(path)
    _fsync_dir(path.parent)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RunWriter:
    """Writes one run's day files as jobs are added, then its manifest; all fsynced."""

    def __init__(self, directory: Path, run: str, created_at: datetime) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.manifest = Manifest(run, created_at, [])
        self._open: dict[date, tuple[DayFile, IO[bytes], gzip.GzipFile]] = {}

    def add(self, job: ArchivedJob, rows: Sequence[StoredRow]) -> None:
        """Append one job's whole stream to the file of its finish day."""
        day = job.finished_at.date()
        if day not in self._open:
            name = f"{day.isoformat()}.{self.manifest.run}.ndjson.gz"
            raw = open(self.directory / (name + ".partial"), "wb")  # noqa: SIM115
            # mtime 0: the same stream makes the same bytes, whenever it is written.
            self._open[day] = (DayFile(name, day), raw,
                               gzip.GzipFile(fileobj=raw, mode="wb", mtime=0))
        entry, _, out = self._open[day]
        out.write(b"".join(encode_line(r) for r in rows))
        entry.jobs.append(job)
        entry.events += len(rows)

    def finish(self) -> Manifest:
        """Close, fsync and name every file, then write the manifest that lists them."""
        for entry, raw, out in self._open.values():
            out.close()
            raw.flush()
            os.fsync(raw.fileno())
            raw.close()
            path = self.directory / entry.name
            (self.directory / (entry.name + ".partial")).rename(path)
            entry.sha256, entry.bytes = sha256_of(path), path.stat().st_size
            self.manifest.files.append(entry)
        self._open.clear()
        self.manifest.files.sort(key=lambda f: f.day)
        _fsync_dir(self.directory)
        if self.manifest.files:
            data = self.manifest.as_bytes()
            _durable(self.directory / manifest_name(self.manifest.run),
                     lambda raw: raw.write(data))
        return self.manifest


def read_file(directory: Path, entry: DayFile) -> Iterator[StoredRow]:
    """The events of one day file, once its checksum matches the manifest's."""
    path = directory / entry.name
    if sha256_of(path) != entry.sha256:
        raise ArchiveError(f"{path} does not match its manifest's sha256; it is damaged")
    with gzip.open(path, "rb") as lines:
        for line in lines:
            yield decode_line(line)


def find_job(directory: Path, job_id: UUID) -> list[StoredRow]:
    """The archived stream of a job: its latest copy, should it have been archived twice."""
    found: tuple[int, DayFile] | None = None
    for manifest in manifests(directory):
        for entry in manifest.files:
            for job in entry.jobs:
                if job.job_id == job_id and (found is None or job.version >= found[0]):
                    found = (job.version, entry)
    if found is None:
        return []
    return [r for r in read_file(directory, found[1]) if r.job_id == job_id]


class ArchiveError(ConveyorError):
    """Raised when an archive directory holds a damaged file or a manifest of another format."""
