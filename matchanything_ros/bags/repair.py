"""``bag repair``: make a bag that was not closed (killed recorder, power loss, copy cut short)
whole again with the libraries that wrote it.

What a killed writer of ours leaves, and what reads it:

* **sqlite3**: every committed message (one commit per second, 100 messages or 32 MiB) and a
  ``metadata.yaml`` whose counts may lag by one commit. ``rosbags`` and ``evaluate`` read it as
  it is. A ``.db3-journal`` is left over; its header stays zero until SQLite is about to change
  the db file, so it only matters if the process died inside a commit (a few ms per second):
  then the journal is "hot", our reader lets SQLite roll it back (SQLite's own recovery, run
  by any SQLite reader but not by ``rosbags``, which opens the file immutable), and so does
  repair, which then recounts.
* **MCAP**: every closed chunk (one per second or 100 messages), no summary, no footer.
  ``mcap``'s streaming reader (``NonSeekingReader``) and our salvage reader (``evaluate``,
  ``replay``) read it as it is; ``rosbags`` and seeking readers need the summary. Repair:
  the readable records are streamed into a new file by ``mcap.Writer`` (which writes the
  summary, indexes and the ``rosbag2`` metadata record) that replaces the old one atomically.

In both cases ``metadata.yaml`` and every other copy of the metadata are rewritten from the
recount, for the bag's own metadata version. A bag that is already whole is left untouched.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .storage import (
    VERSIONS, BagError, BagWriter, TopicRecord, _Salvage, check_sqlite_schema, load_yaml,
    recover_sqlite, storage_file_of,
)


@dataclass
class RepairResult:
    bag: Path
    repaired: bool
    messages: int
    topics: int
    version: int
    storage: str
    note: str = ""

    def text(self) -> str:
        what = "repaired" if self.repaired else "bag is whole, nothing to repair:"
        tail = f" ({self.note})" if self.note else ""
        return (f"{what} {self.bag}: {self.messages} messages on {self.topics} topics, "
                f"{self.storage}, rosbag2 metadata v{self.version}{tail}")


def _declared(bag: Path) -> dict | None:
    """metadata.yaml's mapping, or None when it is missing or unreadable."""
    path = bag / "metadata.yaml"
    try:
        doc = load_yaml(path.read_text())
        info = doc["rosbag2_bagfile_information"]
        int(info["version"])
        return info
    except Exception:
        return None


def _is_whole(bag: Path, declared: dict | None, storage_file: Path) -> bool:
    """Whole only after every record was read: rosbags opens the bag and reads every message,
    metadata.yaml's topics, types and counts (per topic and in total) equal the storage file's,
    and (MCAP) every chunk passes its CRC. A lying metadata.yaml or one flipped chunk byte is
    not whole."""
    from rosbags.rosbag2 import Reader

    if declared is None:
        return False
    try:
        with Reader(bag) as reader:
            stored: dict[str, tuple[str, int]] = {}
            for storage in reader.storage.storages:  # the storage file's own topics and counts
                for c in storage.connections:
                    n = stored.get(c.topic, (c.msgtype, 0))[1]
                    stored[c.topic] = (c.msgtype, n + c.msgcount)
            read = sum(1 for _ in reader.messages())
        listed = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], int(t["message_count"]))
                  for t in declared["topics_with_message_count"]}
        total = sum(n for _, n in stored.values())
        if listed != stored or int(declared["message_count"]) != total or read != total:
            return False
    except Exception:
        return False
    if storage_file.suffix == ".mcap":
        salvage = _Salvage(storage_file)
        return salvage.error is None and salvage.bad_chunks_total == 0
    return True


def repair(bag: str | Path) -> RepairResult:
    """Repair ``bag`` (a bag directory) in place; see the module docstring."""
    bag = Path(bag)
    if not bag.is_dir():
        raise BagError(f"bag repair takes a bag directory, got {bag} ({'missing' if not bag.exists() else 'a file'})")
    storage_file = storage_file_of(bag)
    if storage_file is None:
        raise BagError(f"{bag} holds no single .mcap or .db3 file to repair")
    storage = "mcap" if storage_file.suffix == ".mcap" else "sqlite3"
    recovered = storage == "sqlite3" and recover_sqlite(storage_file)
    if storage == "sqlite3":
        check_sqlite_schema(storage_file)  # before any query: a VIEW can be a query without end
    declared = _declared(bag)
    if _is_whole(bag, declared, storage_file):
        topics = declared["topics_with_message_count"]
        return RepairResult(bag, recovered, int(declared["message_count"]), len(topics), int(declared["version"]),
                            storage, "rolled back an unfinished sqlite commit" if recovered else "")

    salvage = _Salvage(storage_file)
    if not salvage.records:
        raise BagError(f"cannot repair {bag}: no readable topic in {storage_file.name} ({salvage.error or 'empty'})")
    version = _version(declared, salvage)
    distro = (declared or {}).get("ros_distro") or ""
    note = f"stopped at damage: {salvage.error}" if salvage.error else ""

    # Rewrite into a sibling directory, then swap the storage file and metadata.yaml in.
    tmp_dir = bag.with_name(bag.name + ".repair-tmp")
    if tmp_dir.exists():  # left by an interrupted repair: a derived copy, rebuilt below
        shutil.rmtree(tmp_dir)
    writer = BagWriter(tmp_dir, storage=storage, version=version,
                       distro=distro if distro in ("humble", "iron", "jazzy", "kilted") else "humble",
                       flush_seconds=float("inf"), flush_messages=1 << 30)
    writer.info.file_name = storage_file.name  # keep the original file name
    writer.open()
    try:
        for record in salvage.records.values():
            writer.add_record(TopicRecord(
                record.name, record.msgtype, record.qos or _qos_default(version), type_hash=record.type_hash,
                msgdef=record.msgdef, msgdef_encoding=record.msgdef_encoding,
                serialization_format=record.serialization_format,
            ))
        count = 0
        try:
            for topic, _, t_ns, data in salvage.messages(None):
                writer.write_raw(topic, t_ns, data)
                count += 1
        except Exception:
            pass  # the damage: everything before it is kept
    finally:
        writer.close()
    if declared and int(declared.get("version", version)) != version:
        note = (note + "; " if note else "") + f"metadata.yaml declared v{declared['version']}, storage is v{version}"
    if salvage.skipped:
        note = (note + "; " if note else "") + f"left out {salvage.skipped} row(s) naming no known topic"
    if salvage.bad_chunks:
        note = (note + "; " if note else "") + f"left out {salvage.bad_chunks} damaged chunk(s) (CRC), read on after them"
    new_file = tmp_dir / storage_file.name
    # the original stays beside the repaired bag (suffix .orig: no reader takes it for storage)
    # unless an earlier repair already kept one: the first original is the one worth keeping
    for kept in (storage_file, bag / "metadata.yaml"):
        backup = kept.with_name(kept.name + ".orig")
        if kept.exists() and not backup.exists():
            shutil.copy2(kept, backup)
    os.replace(new_file, storage_file)
    for tail in ("-journal", "-wal", "-shm"):
        storage_file.with_name(storage_file.name + tail).unlink(missing_ok=True)
    os.replace(tmp_dir / "metadata.yaml", bag / "metadata.yaml")
    shutil.rmtree(tmp_dir)
    return RepairResult(bag, True, count, len(salvage.records), version, storage, note)


def _version(declared: dict | None, salvage: _Salvage) -> int:
    """The version to rewrite the bag in: what the storage file's layout shows (db3 schema 3 /
    MCAP channels without type hashes: 5; else 9), else metadata.yaml's if we write it, else 5."""
    if salvage.versions:
        return max(salvage.versions)
    if declared is not None and int(declared["version"]) in VERSIONS:
        return int(declared["version"])
    return 5


def _qos_default(version: int) -> str:
    from .storage import default_qos, qos_text

    return qos_text([default_qos()], version)
