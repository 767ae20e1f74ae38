"""Reading and writing ROS 2 bags with ``rosbags``: storage plugin, metadata version, typestore.

Writing: ``rosbags`` writes rosbag2 metadata version 8 or 9 only, and ROS 2 Humble's
rosbag2 decodes ``offered_qos_profiles`` as a YAML *string* (version 9 writes a list, which
Humble cannot parse) and knows the fields up to version 5. So for ``version=5`` the bag is
written as version 8 (QoS as a string) and ``metadata.yaml`` is then rewritten as version 5,
dropping the three newer fields (``custom_data`` v6, ``type_description_hash`` v7,
``ros_distro`` v8). Humble, Iron, Jazzy and Kilted all read version 5; 8 needs Jazzy or newer,
9 needs Kilted or newer.

Reading: directory bags (``metadata.yaml`` + files), or a bare ``.mcap`` / ``.db3`` file, any
metadata version 1-9. Every failure becomes a :class:`BagError` naming the bag and what to do.
"""
from __future__ import annotations

import functools
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

STORAGES = ("mcap", "sqlite3")
VERSIONS = (5, 8, 9)
DISTROS = ("humble", "iron", "jazzy", "kilted")
# Oldest ROS 2 distribution whose rosbag2 reads each metadata version we write.
VERSION_MIN_DISTRO = {5: "humble", 8: "jazzy", 9: "kilted"}


class BagError(ValueError):
    """A bag cannot be read or written; the message says which bag, what is wrong, what to do."""


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


class BagWriter:
    """Write messages to a new ROS 2 bag; always leaves a readable bag behind.

    Use as a context manager, or call :meth:`close` in ``finally``: unlike ``rosbags``'
    own context manager (which aborts on an exception) this one finishes the file and writes
    ``metadata.yaml`` on any exit, Ctrl-C included, so a partial run stays playable.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap", version: int = 5, distro: str = "humble"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
        if version not in VERSIONS:
            raise BagError(
                f"unsupported rosbag2 metadata version {version}; choose 5 (Humble and newer), "
                "8 (Jazzy and newer) or 9 (Kilted and newer)"
            )
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; remove it or choose another path")
        self.storage = storage
        self.version = version
        self.typestore = get_typestore(distro)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        # version 5 is written as 8 (QoS as a YAML string, as Humble expects) and downgraded on close
        self._writer = Writer(self.path, version=9 if version == 9 else 8, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}
        self._open = False
        self.count = 0

    def open(self) -> "BagWriter":
        try:
            self._writer.open()
        except Exception as exc:  # WriterError, PermissionError
            raise BagError(f"cannot create output bag {self.path}: {exc}") from None
        self._open = True
        return self

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False

    def add_topic(self, topic: str, msgtype: str, qos_depth: int = 10) -> None:
        """Register a topic (once) before writing to it."""
        if topic in self._connections:
            return
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[default_qos(qos_depth)]
        )

    def write(self, topic: str, t_ns: int, msg: Any) -> None:
        """Serialize ``msg`` (a typestore message object) and write it with receive time ``t_ns``."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic} was not added to {self.path} before writing")
        self._writer.write(conn, int(t_ns), self.typestore.serialize_cdr(msg, conn.msgtype))
        self.count += 1

    def set_custom_data(self, key: str, value: str) -> None:
        """Key/value stored in ``metadata.yaml`` (metadata version >= 6 only; ignored for 5)."""
        self._writer.set_custom_data(key, value)

    def close(self) -> None:
        """Finish the storage file and write ``metadata.yaml`` (idempotent)."""
        if not self._open:
            return
        self._open = False
        self._writer.close()
        if self.version == 5:
            downgrade_metadata_to_v5(self.path / "metadata.yaml")


def downgrade_metadata_to_v5(metadata_path: Path) -> None:
    """Rewrite a version 8 ``metadata.yaml`` as version 5 (readable by Humble's rosbag2)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    doc = yaml.load(metadata_path.read_text())
    info = doc["rosbag2_bagfile_information"]
    if info["version"] != 8:
        raise BagError(f"{metadata_path}: expected metadata version 8 to downgrade, got {info['version']}")
    info["version"] = 5
    info.pop("custom_data", None)
    info.pop("ros_distro", None)
    for topic in info["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash", None)
    tmp = metadata_path.with_suffix(".yaml.tmp")
    with tmp.open("w") as stream:
        yaml.dump(doc, stream)
    tmp.replace(metadata_path)


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

    def open(self) -> "BagReader":
        from rosbags.rosbag2 import Reader

        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise BagError(
                f"{self.path} is not a ROS 2 bag (no metadata.yaml); give the bag directory "
                "or its .mcap/.db3 file (`ros2 bag reindex` can rebuild a lost metadata.yaml)"
            )
        if self.path.is_file() and self.path.suffix not in (".mcap", ".db3"):
            raise BagError(f"{self.path} is not a ROS 2 bag: expected a directory, a .mcap or a .db3 file")
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:  # ReaderError, apsw errors, struct errors, YAML errors ...
            reason = _describe(exc)
            storage_file = self._storage_file()
            if self.salvage and storage_file is not None:
                self._salvaged = _Salvage(storage_file)
                if self._salvaged.topics:
                    self.damage = f"bag {self.path} is truncated or corrupted ({reason})"
                    return self
            raise BagError(
                f"cannot open bag {self.path}: {reason} -- the bag is corrupted, truncated "
                "or not a ROS 2 bag (for a truncated recording try `ros2 bag reindex`)"
            ) from None
        self._reader = reader
        return self

    def _storage_file(self) -> Path | None:
        if self.path.is_file():
            return self.path
        files = [f for f in sorted(self.path.iterdir()) if f.suffix in (".mcap", ".db3")]
        return files[0] if len(files) == 1 else None

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
        from ruamel.yaml import YAML

        meta = self.path / "metadata.yaml"
        if not meta.is_file():
            return None
        return int(YAML(typ="safe").load(meta.read_text())["rosbag2_bagfile_information"]["version"])

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
        while True:
            try:
                topic, msgtype, t_ns, raw = next(it)
                msg = self.typestore.deserialize_cdr(raw, msgtype)
            except StopIteration:
                break
            except Exception as exc:
                if self.damage:
                    raise BagError(
                        f"{self.damage}: read {self.messages_read} messages before the damage"
                    ) from None
                raise BagError(
                    f"bag {self.path} is truncated or corrupted after {self.messages_read} messages: "
                    f"{_describe(exc)}"
                ) from None
            self.messages_read += 1
            yield topic, t_ns, msg
        if self.damage:
            raise BagError(f"{self.damage}: read {self.messages_read} messages before the damage")


class _Salvage:
    """File-order reading of a damaged .mcap or .db3 file up to the first unreadable record."""

    def __init__(self, path: Path):
        self.path = path
        self.topics: dict[str, TopicInfo] = {}
        try:  # one counting pass: topics and message counts up to the damage
            for topic, msgtype, _, _ in self.messages(None):
                info = self.topics.get(topic)
                self.topics[topic] = TopicInfo(topic, msgtype, (info.count if info else 0) + 1)
        except Exception:
            pass

    def messages(self, topics: list[str] | None) -> Iterator[tuple[str, str, int, bytes]]:
        if self.path.suffix == ".mcap":
            yield from self._mcap(topics)
        else:
            yield from self._sqlite(topics)

    def _mcap(self, topics):
        from mcap.reader import NonSeekingReader

        with self.path.open("rb") as stream:
            reader = NonSeekingReader(stream, validate_crcs=True)
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=False):
                if schema is None:
                    continue
                yield channel.topic, schema.name, message.log_time, message.data

    def _sqlite(self, topics):
        import sqlite3

        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            names = {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, name, type FROM topics")}
            for topic_id, t_ns, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                topic, msgtype = names[topic_id]
                if topics is None or topic in topics:
                    yield topic, msgtype, int(t_ns), bytes(data)
        finally:
            db.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + " ..."
