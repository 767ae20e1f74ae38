"""Reading and writing ROS 2 bags: storage plugin, metadata version, typestore, crash safety.

Writing follows what a released rosbag2 writes for the declared metadata version, in every
copy of the metadata (``metadata.yaml``, the db3 ``schema`` and ``metadata`` tables, the MCAP
``rosbag2`` metadata record and channel metadata), all built by :class:`BagInfo`:

* version 5, as Humble writes it: db3 schema 3; QoS as a YAML string; no type hashes, no distro
  field (the db3 ``schema`` table and MCAP ``ROS_DISTRO`` say ``humble``);
* version 9, as Jazzy (and Kilted) write it: db3 schema 4 with message definitions; QoS as a
  YAML list in ``metadata.yaml``; RIHS01 type hashes; ``ros_distro``.

(from ros2/rosbag2: ``bag_metadata.hpp`` has ``version = 5`` on humble, 7 on iron, 9 on jazzy;
``sqlite_storage.hpp`` ``kDBSchemaVersion_`` 3 on humble, 4 from iron; version 8 was never in a
release.) Humble, Iron, Jazzy and Kilted all read version 5; version 9 needs Jazzy or newer.
Message definitions, CDR and RIHS01 hashes (REP 2011) come from ``rosbags``' typestore; MCAP
files are written with the ``mcap`` library, db3 files with ``sqlite3``.

Crash safety: a :class:`BagWriter` commits every ``flush_seconds`` (1 s), ``flush_messages``
(100) messages or 8 MiB, whichever comes first, never inside a :meth:`BagWriter.group`: sqlite3
commits its transaction (rollback journal, ``synchronous=FULL``), MCAP closes its chunk
(``mcap.Writer.flush``) and fsyncs, and
``metadata.yaml`` is rewritten atomically with the committed counts. A writer killed at any
point (SIGKILL, power loss) loses at most the messages since the last commit; see
:mod:`matchanything_ros.bags.repair` for what reads such a bag before and after ``bag repair``.

Reading: directory bags (``metadata.yaml`` + files), or a bare ``.mcap`` / ``.db3`` file, any
metadata version 1-9. Every failure becomes a :class:`BagError` naming the bag and what to do.
"""
from __future__ import annotations

import copy
import functools
import io
import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

STORAGES = ("mcap", "sqlite3")
VERSIONS = (5, 9)
DISTROS = ("humble", "iron", "jazzy", "kilted")
#: metadata version -> the oldest distribution whose rosbag2 *writes* it (its ``ros_distro``)
VERSION_WRITTEN_BY = {5: "humble", 9: "jazzy"}
#: distribution -> metadata version its rosbag2 writes (iron's 7 is read, not written, here)
DISTRO_WRITES = {"humble": 5, "iron": 7, "jazzy": 9, "kilted": 9}
#: metadata version -> db3 schema version rosbag2 writes with it
SQLITE_SCHEMA_VERSION = {5: 3, 9: 4}
FLUSH_SECONDS = 1.0
FLUSH_MESSAGES = 100
FLUSH_BYTES = 8 * 1024 * 1024  # and at 8 MiB: a commit's pages fit the sqlite cache (128 MiB)
MCAP_CHUNK_BYTES = 1024 * 1024  # an MCAP chunk also closes (no fsync) at 1 MiB, outside groups


class BagError(ValueError):
    """A bag cannot be read or written; the message says which bag, what is wrong, what to do."""


def check_version(version: int) -> None:
    if version not in VERSIONS:
        raise BagError(
            f"unsupported rosbag2 metadata version {version}; choose 5 (what Humble writes; "
            "Humble and newer read it) or 9 (what Jazzy and Kilted write; Jazzy and newer read it)"
        )


def ros_distro_for(version: int, distro: str) -> str:
    """The ``ros_distro`` a bag of this version records: ``distro`` when its rosbag2 writes
    this version, else the oldest distribution that does."""
    return distro if DISTRO_WRITES.get(distro) == version else VERSION_WRITTEN_BY[version]


@functools.lru_cache(maxsize=None)
def get_typestore(distro: str = "humble"):
    """The ``rosbags`` typestore of one ROS 2 distribution (message definitions for reading and
    writing). Built once per distribution (about 85 ms) and shared: nothing registers types in
    it, and the node decodes every image with the Humble one."""
    from rosbags.typesys import Stores, get_typestore as _get

    if distro not in DISTROS:
        raise BagError(f"unknown ROS 2 distribution {distro!r}; choose one of {', '.join(DISTROS)}")
    return _get(getattr(Stores, f"ROS2_{distro.upper()}"))


def stamp_ns(header: Any) -> int:
    """Header stamp of a message (rosbags or rclpy) as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(typestore, t_ns: int, frame_id: str):
    """A ``std_msgs/Header`` for the given stamp (ns)."""
    Time = typestore.types["builtin_interfaces/msg/Time"]
    Header = typestore.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000)), frame_id=frame_id)


def default_qos(depth: int = 10):
    """Reliable / volatile / keep-last QoS, recorded with each topic so ``ros2 bag play``
    offers the same profile a default rclpy publisher would."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)  # 0 = the RMW default (infinite) for deadline, lifespan, lease
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE,
        QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def qos_text(profiles: list, version: int) -> str:
    """Offered QoS profiles as rosbag2 stores them in the db3 ``topics`` table and MCAP channel
    metadata: a YAML string, numeric enums before version 9, names from version 9."""
    from rosbags.rosbag2.metadata import dump_qos_v8, dump_qos_v9

    if version < 9:
        return dump_qos_v8(profiles)
    return dump_yaml(dump_qos_v9(profiles)).strip()


def dump_yaml(doc: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(doc, stream)
    return stream.getvalue()


def load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


@dataclass
class TopicRecord:
    """One topic as every metadata copy describes it."""

    name: str
    msgtype: str
    qos: str  # offered_qos_profiles, serialized for the bag's version (qos_text)
    type_hash: str = ""  # RIHS01_..., version >= 7 only
    msgdef: str = ""  # message definition text (ros2msg / ros2idl)
    msgdef_encoding: str = "ros2msg"
    serialization_format: str = "cdr"
    count: int = 0
    id: int = 0


@dataclass
class BagInfo:
    """What ``metadata.yaml`` says: built from the writer's state, or recounted by repair."""

    version: int
    storage: str
    file_name: str
    ros_distro: str
    topics: list[TopicRecord] = field(default_factory=list)
    start_ns: int | None = None
    end_ns: int | None = None
    custom_data: dict[str, str] = field(default_factory=dict)

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics)

    def note(self, topic: TopicRecord, t_ns: int) -> None:
        topic.count += 1
        self.start_ns = t_ns if self.start_ns is None else min(self.start_ns, t_ns)
        self.end_ns = t_ns if self.end_ns is None else max(self.end_ns, t_ns)

    def metadata(self) -> dict[str, Any]:
        """The ``rosbag2_bagfile_information`` mapping of this version, field by field as
        rosbag2's ``yaml.hpp`` encodes it (version 5: no custom_data, type hash, ros_distro)."""
        from rosbags.rosbag2.metadata import parse_qos, dump_qos_v9

        start = self.start_ns or 0
        duration = (self.end_ns - self.start_ns) if self.start_ns is not None else 0
        topics = []
        for t in self.topics:
            meta: dict[str, Any] = {"name": t.name, "type": t.msgtype, "serialization_format": t.serialization_format}
            # version 9 writes the QoS as a YAML list in metadata.yaml, a string in the storage
            meta["offered_qos_profiles"] = dump_qos_v9(parse_qos(t.qos)) if self.version >= 9 else t.qos
            if self.version >= 7:
                meta["type_description_hash"] = t.type_hash
            topics.append({"topic_metadata": meta, "message_count": t.count})
        info: dict[str, Any] = {
            "version": self.version,
            "storage_identifier": self.storage,
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": self.message_count,
            "topics_with_message_count": topics,
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [self.file_name],
            "files": [{
                "path": self.file_name,
                "starting_time": {"nanoseconds_since_epoch": start},
                "duration": {"nanoseconds": duration},
                "message_count": self.message_count,
            }],
        }
        if self.version >= 6:
            info["custom_data"] = dict(self.custom_data)
        if self.version >= 8:
            info["ros_distro"] = self.ros_distro
        return info

    def serialized(self) -> str:
        """The metadata as the db3 ``metadata`` table and MCAP ``rosbag2`` record hold it."""
        return dump_yaml(self.metadata())

    def write_yaml(self, bag_dir: Path) -> None:
        """Replace ``metadata.yaml`` atomically (a reader sees the old or the new file)."""
        path = bag_dir / "metadata.yaml"
        tmp = bag_dir / "metadata.yaml.tmp"
        with tmp.open("w") as stream:
            stream.write(dump_yaml({"rosbag2_bagfile_information": self.metadata()}))
            stream.flush()
            os.fsync(stream.fileno())
        tmp.replace(path)
        _fsync_dir(bag_dir)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (power loss); a no-op where directories cannot be opened."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _SqliteStorage:
    """A db3 file laid out as rosbag2's sqlite3 plugin lays it out for the version (schema 3
    for version 5, schema 4 with message definitions and type hashes for version 9)."""

    def __init__(self, path: Path, info: BagInfo):
        import sqlite3

        self.path = path
        self.schema = SQLITE_SCHEMA_VERSION[info.version]
        # autocommit mode: transactions are explicit (BEGIN ... COMMIT at each flush)
        self.db = sqlite3.connect(f"file:{path}?mode=rwc", uri=True, isolation_level=None)
        # Rollback journal + fsync at commit: after a crash the file holds every committed
        # transaction (readable as is), and a leftover journal is rolled back on the next
        # read-write open (``bag repair``). A cache larger than one flush keeps uncommitted
        # pages out of the file, so a reader that ignores the journal sees committed data.
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA cache_size=-131072")  # KiB: 128 MiB
        hash_col = ", type_description_hash TEXT NOT NULL" if self.schema >= 4 else ""
        script = [
            "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL)",
            "CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL)",
            "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
            f"serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL{hash_col})",
            "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
            "timestamp INTEGER NOT NULL, data BLOB NOT NULL)",
            "CREATE INDEX timestamp_idx ON messages (timestamp ASC)",
        ]
        if self.schema >= 4:
            script.insert(3, "CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, "
                          "encoding TEXT NOT NULL, encoded_message_definition TEXT NOT NULL, "
                          "type_description_hash TEXT NOT NULL)")
        self.db.execute("BEGIN")
        for statement in script:
            self.db.execute(statement)
        self.db.execute("INSERT INTO schema(schema_version, ros_distro) VALUES (?, ?)", (self.schema, info.ros_distro))
        self.db.execute("INSERT INTO metadata(id, metadata_version, metadata) VALUES (1, ?, ?)",
                        (info.version, info.serialized()))
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")
        self._types: set[str] = set()

    def add_topic(self, topic: TopicRecord) -> None:
        if self.schema >= 4:
            self.db.execute("INSERT INTO topics VALUES (?, ?, ?, ?, ?, ?)", (
                topic.id, topic.name, topic.msgtype, topic.serialization_format, topic.qos, topic.type_hash))
            if topic.msgtype not in self._types:
                self.db.execute(
                    "INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition, "
                    "type_description_hash) VALUES (?, ?, ?, ?)",
                    (topic.msgtype, topic.msgdef_encoding, topic.msgdef, topic.type_hash))
        else:
            self.db.execute("INSERT INTO topics VALUES (?, ?, ?, ?, ?)", (
                topic.id, topic.name, topic.msgtype, topic.serialization_format, topic.qos))
        self._types.add(topic.msgtype)

    def write(self, topic: TopicRecord, t_ns: int, data: bytes) -> None:
        self.db.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", (topic.id, t_ns, data))

    def commit(self, info: BagInfo) -> None:
        # the metadata row is updated in the same transaction as the messages it counts
        self.db.execute("UPDATE metadata SET metadata_version = ?, metadata = ? WHERE id = 1",
                        (info.version, info.serialized()))
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self, info: BagInfo) -> None:
        self.commit(info)
        self.db.execute("COMMIT")
        self.db.close()


class _McapStorage:
    """An MCAP file as rosbag2's MCAP plugin writes it (profile ``ros2``, channel metadata
    ``offered_qos_profiles`` and, from version 9, ``topic_type_hash``; a ``rosbag2`` metadata
    record with the serialized metadata and ``ROS_DISTRO``), written by the ``mcap`` library."""

    def __init__(self, path: Path, info: BagInfo):
        from mcap.writer import CompressionType, Writer

        self.path = path
        self.stream = path.open("xb")
        # Uncompressed, as rosbag2's MCAP plugin writes by default. Chunks are closed by us
        # (close_chunk at ~1 MiB, commit), never by the library, so that a chunk never ends
        # inside a group of messages (a killed file keeps a pair's outputs whole or not at all).
        self.writer = Writer(self.stream, chunk_size=1 << 40, compression=CompressionType.NONE)
        self.chunk_bytes = 0
        self.writer.start(profile="ros2", library=_library())
        self._schemas: dict[str, int] = {}
        self._channels: dict[int, int] = {}
        self.version = info.version

    def add_topic(self, topic: TopicRecord) -> None:
        schema = self._schemas.get(topic.msgtype)
        if schema is None:
            schema = self.writer.register_schema(topic.msgtype, topic.msgdef_encoding, topic.msgdef.encode())
            self._schemas[topic.msgtype] = schema
        metadata = {"offered_qos_profiles": topic.qos}
        if self.version >= 7:
            metadata["topic_type_hash"] = topic.type_hash
        self._channels[topic.id] = self.writer.register_channel(topic.name, topic.serialization_format, schema, metadata)

    def write(self, topic: TopicRecord, t_ns: int, data: bytes) -> None:
        self.writer.add_message(self._channels[topic.id], log_time=t_ns, data=data, publish_time=t_ns)
        self.chunk_bytes += len(data)

    def close_chunk(self) -> None:
        """Write the chunk in progress to the file (survives SIGKILL; power loss: next commit)."""
        if self.chunk_bytes >= MCAP_CHUNK_BYTES:
            self.writer.flush()
            self.chunk_bytes = 0

    def commit(self, info: BagInfo) -> None:
        self.writer.flush()  # closes the chunk in progress and flushes the stream
        self.chunk_bytes = 0
        os.fsync(self.stream.fileno())

    def close(self, info: BagInfo) -> None:
        self.writer.add_metadata("rosbag2", {"serialized_metadata": info.serialized(), "ROS_DISTRO": info.ros_distro})
        self.writer.finish()
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()


def _library() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"matchanything_ros {version('matchanything_ros')}"
    except PackageNotFoundError:
        return "matchanything_ros"


class BagWriter:
    """Write messages to a new ROS 2 bag that stays readable if the process dies.

    Use as a context manager, or call :meth:`close` in ``finally``: it finishes the file and
    writes the final ``metadata.yaml`` on any exit, Ctrl-C included. Between commits (every
    ``flush_seconds`` or ``flush_messages``) the bag on disk is a complete bag of everything
    committed so far, plus, for MCAP, the missing summary that ``bag repair`` adds.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap", version: int = 5, distro: str = "humble",
                 flush_seconds: float = FLUSH_SECONDS, flush_messages: int = FLUSH_MESSAGES):
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
        check_version(version)
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; remove it or choose another path")
        self.storage = storage
        self.version = version
        self.typestore = get_typestore(distro)
        suffix = ".mcap" if storage == "mcap" else ".db3"
        self.info = BagInfo(version, storage, f"{self.path.name}{suffix}", ros_distro_for(version, distro))
        self.flush_seconds = flush_seconds
        self.flush_messages = flush_messages
        self._topics: dict[str, TopicRecord] = {}
        self._committed = copy.deepcopy(self.info)  # what metadata.yaml may claim: committed only
        self._store: _SqliteStorage | _McapStorage | None = None
        self._pending = 0
        self._pending_bytes = 0
        self._last_commit = 0.0
        self._groups = 0
        self.count = 0

    def open(self) -> "BagWriter":
        try:
            self.path.mkdir(parents=True)
            file_path = self.path / self.info.file_name
            self._store = (_McapStorage if self.storage == "mcap" else _SqliteStorage)(file_path, self.info)
            self.info.write_yaml(self.path)  # provisional: readers find the bag from the start
        except FileExistsError:
            raise BagError(f"output bag {self.path} exists already; remove it or choose another path") from None
        except OSError as exc:
            raise BagError(f"cannot create output bag {self.path}: {exc.strerror or exc}") from None
        self._last_commit = time.monotonic()
        return self

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False

    def add_topic(self, topic: str, msgtype: str, qos_depth: int = 10) -> None:
        """Register a topic (once) before writing to it."""
        if topic in self._topics:
            return
        msgdef, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
        record = TopicRecord(
            topic, msgtype, qos_text([default_qos(qos_depth)], self.version),
            type_hash=self.typestore.hash_rihs01(msgtype), msgdef=msgdef, id=len(self._topics) + 1,
        )
        self.add_record(record)

    def add_record(self, record: TopicRecord) -> None:
        """Register a topic described field by field (``bag repair`` keeps the original's)."""
        record.id, record.count = len(self._topics) + 1, 0
        self._store.add_topic(record)
        self._topics[record.name] = record
        self.info.topics.append(record)
        # listed in metadata.yaml (with the committed counts) before any of its messages is
        # committed: readers skip storage topics that metadata.yaml lacks
        self._committed.topics.append(copy.deepcopy(record))
        self._committed.write_yaml(self.path)

    def write(self, topic: str, t_ns: int, msg: Any) -> None:
        """Serialize ``msg`` (a typestore message object) and write it with receive time ``t_ns``."""
        record = self._topics.get(topic)
        if record is None:
            raise BagError(f"topic {topic} was not added to {self.path} before writing")
        self.write_raw(topic, t_ns, bytes(self.typestore.serialize_cdr(msg, record.msgtype)))

    def write_raw(self, topic: str, t_ns: int, data: bytes) -> None:
        """Write an already serialized message."""
        record = self._topics[topic]
        self._store.write(record, int(t_ns), data)
        self.info.note(record, int(t_ns))
        self.count += 1
        self._pending += 1
        self._pending_bytes += len(data)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if self._groups:
            return
        if (self._pending >= self.flush_messages or self._pending_bytes >= FLUSH_BYTES
                or time.monotonic() - self._last_commit >= self.flush_seconds):
            self.flush()
        elif isinstance(self._store, _McapStorage):
            self._store.close_chunk()

    @contextmanager
    def group(self):
        """Messages written inside are committed together (replay: all outputs of one pair),
        so a killed writer keeps all of them or none."""
        self._groups += 1
        try:
            yield self
        finally:
            self._groups -= 1
            if self._store is not None:
                self._maybe_flush()

    def flush(self) -> None:
        """Commit everything written so far: storage first, then ``metadata.yaml``."""
        if self._store is None:
            return
        self._store.commit(self.info)
        self._committed = copy.deepcopy(self.info)
        self._committed.write_yaml(self.path)
        self._pending = self._pending_bytes = 0
        self._last_commit = time.monotonic()

    def abandon(self) -> None:
        """Drop the writer without finishing the file: what a killed process leaves (tests)."""
        store, self._store = self._store, None
        if isinstance(store, _McapStorage):
            store.stream.close()
        elif store is not None:
            store.db.close()  # the open transaction is rolled back, as after a crash

    def set_custom_data(self, key: str, value: str) -> None:
        """Key/value stored in the metadata (metadata version >= 6 only; ignored for 5)."""
        self.info.custom_data[key] = str(value)

    def close(self) -> None:
        """Finish the storage file and write the final ``metadata.yaml`` (idempotent)."""
        store, self._store = self._store, None
        if store is None:
            return
        store.close(self.info)
        self.info.write_yaml(self.path)


@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int


class BagReader:
    """Read a ROS 2 bag (directory with ``metadata.yaml``, or a bare ``.mcap`` / ``.db3`` file).

    A bag whose storage file is cut short (a recorder that was killed, a copy that stopped) or
    damaged cannot be opened by ``rosbags``; with ``salvage=True`` the readable messages before
    the damage are read in file order instead (MCAP: record by record with ``mcap``'s
    non-seeking reader; sqlite3: row by row), :attr:`damage` says what is wrong, and iteration
    ends with a :class:`BagError` at the damaged spot so callers can keep what they have.
    """

    def __init__(self, path: str | Path, distro: str = "humble", *, salvage: bool = False):
        self.path = Path(path)
        self.typestore = get_typestore(distro)
        self.salvage = salvage
        self._reader = None
        self._salvaged: _Salvage | None = None
        self.damage: str | None = None
        self.messages_read = 0
        #: MCAP chunks skipped as damaged (CRC / decompression) while reading on past them
        self.skipped_chunks = 0

    def open(self) -> "BagReader":
        from rosbags.rosbag2 import Reader

        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_file() and self.path.suffix not in (".mcap", ".db3"):
            raise BagError(f"{self.path} is not a ROS 2 bag: expected a directory, a .mcap or a .db3 file")
        storage_file = self._storage_file()
        if self.path.is_dir() and storage_file is None and not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path} is not a ROS 2 bag: no metadata.yaml and no single .mcap/.db3 file in it")
        if storage_file is not None and unclean_sqlite(storage_file):
            recover_sqlite(storage_file)  # what any SQLite reader does with a leftover journal
        for db3 in (sorted(self.path.glob("*.db3")) if self.path.is_dir() else [self.path]):
            if db3.suffix == ".db3":
                check_sqlite_schema(db3)
        try:
            if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
                raise BagError("no metadata.yaml")
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:  # ReaderError, apsw errors, struct errors, YAML errors ...
            reason = _describe(exc)
            if self.salvage and storage_file is not None:
                self._salvaged = _Salvage(storage_file)
                if self._salvaged.topics:
                    self.damage = f"bag {self.path} is truncated or corrupted, or was not closed ({reason})"
                    return self
            raise BagError(
                f"cannot open bag {self.path}: {reason} -- the bag is truncated, corrupted, was not closed "
                f"(a killed recorder) or is not a ROS 2 bag; try `matchanything-ros bag repair {self.path}`"
            ) from None
        self._reader = reader
        return self

    def _storage_file(self) -> Path | None:
        return storage_file_of(self.path)

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._reader is not None:
            with suppress(Exception):
                self._reader.close()
            self._reader = None

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Topic name -> type and message count (metadata; salvage: counted up to the damage)."""
        if self._salvaged is not None:
            return dict(self._salvaged.topics)
        out: dict[str, TopicInfo] = {}
        for c in self._reader.connections:
            info = out.get(c.topic)
            out[c.topic] = TopicInfo(c.topic, c.msgtype, c.msgcount + (info.count if info else 0))
        return out

    @property
    def version(self) -> int | None:
        """rosbag2 metadata version (None for a bare storage file)."""
        meta = self.path / "metadata.yaml"
        if not meta.is_file():
            return None
        return int(load_yaml(meta.read_text())["rosbag2_bagfile_information"]["version"])

    @property
    def storage(self) -> str:
        files = [self.path] if self.path.is_file() else sorted(self.path.iterdir())
        return "mcap" if any(f.suffix == ".mcap" for f in files) else "sqlite3"

    def require_topic(self, topic: str, msgtypes: tuple[str, ...]) -> TopicInfo:
        """The topic's info, or a BagError listing the topics the bag has."""
        info = self.topics.get(topic)
        if info is None:
            raise BagError(f"bag {self.path} has no topic {topic}; it has: {self.describe_topics()}")
        if info.msgtype not in msgtypes:
            raise BagError(f"topic {topic} in {self.path} is {info.msgtype}, expected {' or '.join(msgtypes)}")
        return info

    def describe_topics(self) -> str:
        return ", ".join(f"{t.name} [{t.msgtype}, {t.count}]" for t in self.topics.values()) or "(no topics)"

    def messages(self, topics: list[str] | None = None) -> Iterator[tuple[str, int, Any]]:
        """Yield ``(topic, receive_time_ns, message)``: receive-time order (salvage: file
        order). A damaged storage file ends the iteration with a BagError."""
        if self._salvaged is not None:
            it = self._salvaged.messages(topics)
        else:
            conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
            it = ((c.topic, c.msgtype, t, raw) for c, t, raw in self._reader.messages(connections=conns))
        salvage: _Salvage | None = self._salvaged
        last_t: int | None = None
        while True:
            try:
                topic, msgtype, t_ns, raw = next(it)
                msg = self.typestore.deserialize_cdr(raw, msgtype)
            except StopIteration:
                break
            except Exception as exc:
                storage_file = storage_file_of(self.path)
                if salvage is None and self.salvage and storage_file is not None and storage_file.suffix == ".mcap":
                    # a damaged chunk inside a closed MCAP: read on with the salvage reader, which
                    # skips chunks that fail their CRC; what rosbags gave (in time order, up to
                    # last_t) is not given again
                    salvage = _Salvage(storage_file)
                    it = ((tp, mt, t, r) for tp, mt, t, r in salvage.messages(topics) if last_t is None or t > last_t)
                    continue
                if self.damage:
                    raise BagError(
                        f"{self.damage}: read {self.messages_read} messages before the damage"
                    ) from None
                raise BagError(
                    f"bag {self.path} is truncated or corrupted after {self.messages_read} messages: "
                    f"{_describe(exc)}"
                ) from None
            self.messages_read += 1
            last_t = t_ns if last_t is None else max(last_t, t_ns)
            if salvage is not None:
                self.skipped_chunks = salvage.bad_chunks
            yield topic, t_ns, msg
        if salvage is not None:
            self.skipped_chunks = salvage.bad_chunks
        if self.damage:
            raise BagError(f"{self.damage}: read {self.messages_read} messages before the damage")


def storage_file_of(path: Path) -> Path | None:
    """The one storage file of a bag (the path itself for a bare file), or None."""
    if path.is_file():
        return path
    files = [f for f in sorted(path.iterdir()) if f.suffix in (".mcap", ".db3")]
    return files[0] if len(files) == 1 else None


#: first bytes of a rollback journal that SQLite has synced, i.e. one written just before the
#: db file itself is changed; until then the header's magic stays zero (synchronous=FULL)
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


def unclean_sqlite(path: Path) -> bool:
    """A db3 whose writer died while changing the file: a hot rollback journal (synced header:
    the db file may hold half a commit) or a non-empty WAL. A journal whose header is still
    zero (a writer killed between commits) means the db file holds only whole commits."""
    if path.suffix != ".db3":
        return False
    journal, wal = path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")
    with suppress(OSError):
        with journal.open("rb") as stream:
            if stream.read(8) == _JOURNAL_MAGIC:
                return True
    return wal.exists() and wal.stat().st_size > 0


def recover_sqlite(path: Path) -> bool:
    """SQLite's own crash recovery, as any SQLite reader (but not ``rosbags``, which opens
    files immutable) runs it: a read-write open rolls back the unfinished transaction of a
    writer that died (its ``-journal``) or replays a WAL. True when there was one."""
    import logging
    import sqlite3

    if not unclean_sqlite(path):
        return False
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BagError(
            f"{path} was not closed (a writer died) and SQLite cannot recover it here: {_describe(exc)} "
            "(a read-only copy? run `matchanything-ros bag repair` where it is writable)"
        ) from None
    logging.getLogger(__name__).warning("%s: rolled back the unfinished commit of a writer that died", path)
    return True


#: the rosbag2 sqlite3 objects a reader queries: each must be a plain table (a VIEW named
#: ``messages`` can be a recursive query that never ends)
_SQLITE_TABLES = ("messages", "topics", "metadata", "schema", "message_definitions")


def check_sqlite_schema(path: Path) -> None:
    """BagError when one of the rosbag2 objects of ``path`` is not a table (a view, say):
    checked before any reader queries them. A file SQLite cannot read passes: the reader (or
    the salvage of a damaged file) says what is wrong with it."""
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE name IN (%s)"
                                    % ",".join("?" * len(_SQLITE_TABLES)), _SQLITE_TABLES).fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return
    for name, kind in kinds.items():
        if kind != "table":
            raise BagError(f"{path} is not a rosbag2 sqlite3 file: {name} is a {kind}, not a table")


class _Salvage:
    """File-order reading of a damaged .mcap or .db3 file up to the first unreadable record;
    :attr:`records` keeps each topic's stored description (QoS, type hash, definition)."""

    def __init__(self, path: Path):
        self.path = path
        self.topics: dict[str, TopicInfo] = {}
        self.records: dict[str, TopicRecord] = {}
        self.error: str | None = None
        self.versions: set[int] = set()  # metadata versions found in the storage file
        self.skipped = 0  # db3 rows naming no known topic (left out, the rest is read on)
        self.bad_chunks = 0  # MCAP chunks that fail their CRC or do not decompress (skipped)
        try:  # one counting pass: topics and message counts up to the damage
            for topic, msgtype, _, _ in self.messages(None):
                info = self.topics.get(topic)
                self.topics[topic] = TopicInfo(topic, msgtype, (info.count if info else 0) + 1)
        except Exception as exc:
            self.error = _describe(exc)
        self.skipped_total, self.bad_chunks_total = self.skipped, self.bad_chunks
        self.skipped = self.bad_chunks = 0  # the next pass (repair's copy) counts them again

    def messages(self, topics: list[str] | None) -> Iterator[tuple[str, str, int, bytes]]:
        if self.path.suffix == ".mcap":
            yield from self._mcap(topics)
        else:
            yield from self._sqlite(topics)

    def _mcap(self, topics):
        """Records in file order. A chunk whose CRC or compression fails is skipped and counted
        (``bad_chunks``): the chunks after it are still read. Damage to the framing between
        records (a cut file, a garbled length) ends the reading."""
        from mcap.records import Channel, Chunk, Message, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        schemas: dict[int, Any] = {}
        channels: dict[int, Any] = {}
        with self.path.open("rb") as stream:
            for record in StreamReader(stream, skip_magic=False, emit_chunks=True).records:
                if isinstance(record, Chunk):
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception:
                        self.bad_chunks += 1
                        continue
                else:
                    inner = [record]
                for rec in inner:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec
                    elif isinstance(rec, Channel):
                        channels[rec.id] = rec
                    elif isinstance(rec, Message):
                        channel = channels.get(rec.channel_id)
                        schema = schemas.get(channel.schema_id) if channel is not None else None
                        if schema is None or (topics is not None and channel.topic not in topics):
                            continue
                        if channel.topic not in self.records:
                            meta = channel.metadata
                            self.records[channel.topic] = TopicRecord(
                                channel.topic, schema.name, meta.get("offered_qos_profiles", ""),
                                type_hash=meta.get("topic_type_hash", ""), msgdef=schema.data.decode(errors="replace"),
                                msgdef_encoding=schema.encoding, serialization_format=channel.message_encoding,
                            )
                            self.versions.add(9 if "topic_type_hash" in meta else 5)
                        yield channel.topic, schema.name, rec.log_time, rec.data

    def _sqlite(self, topics):
        import sqlite3

        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
            has_hash = "type_description_hash" in columns
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            definitions = {}
            if "message_definitions" in tables:
                definitions = {row[0]: (row[1], row[2]) for row in db.execute(
                    "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions")}
            if "schema" in tables:
                for (schema,) in db.execute("SELECT schema_version FROM schema"):
                    self.versions.add(9 if schema >= 4 else 5)
            names = {}
            query = "SELECT id, name, type, serialization_format, offered_qos_profiles" + (
                ", type_description_hash" if has_hash else "") + " FROM topics"
            for row in db.execute(query):
                names[row[0]] = (row[1], row[2])
                encoding, msgdef = definitions.get(row[2], ("ros2msg", ""))
                self.records.setdefault(row[1], TopicRecord(
                    row[1], row[2], row[4], type_hash=row[5] if has_hash else "", msgdef=msgdef,
                    msgdef_encoding=encoding, serialization_format=row[3]))
            for topic_id, t_ns, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                if topic_id not in names or data is None:  # a row no reader can place: skipped, counted
                    self.skipped += 1
                    continue
                topic, msgtype = names[topic_id]
                if topics is None or topic in topics:
                    yield topic, msgtype, int(t_ns), bytes(data)
        finally:
            db.close()


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the library said
    return text if len(text) < 300 else text[:300] + " ..."
