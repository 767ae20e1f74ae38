"""Hostile bag files for tests and the fuzz suite: what a killed recorder, a copy cut short, a
bad disk or a careless edit leave behind. Each kind is made from a small valid bag of
visible/thermal pairs (``make_bag.write_bag``), then damaged, seeded and reproducible.

Every command that reads bags must answer each of them with a readable result or one error
line and exit code 2, never a traceback (``test/test_bag_crash.py``).
"""
from __future__ import annotations

import random
from pathlib import Path

#: kind -> (storage, what it is)
HOSTILE_KINDS = {
    "truncated_db3": ("sqlite3", "db3 cut to its first 1000 bytes (a copy that stopped)"),
    "truncated_mcap": ("mcap", "MCAP cut in the middle of its data (salvageable up to the cut)"),
    "truncated_mcap_header": ("mcap", "MCAP cut inside its magic"),
    "killed_mcap": ("mcap", "MCAP without summary and footer (a writer killed after some chunks)"),
    "garbage_mcap": ("mcap", "MCAP magic followed by random bytes"),
    "garbage_db3": ("sqlite3", "random bytes named .db3"),
    "hot_journal_db3": ("sqlite3", "db3 with a hot rollback journal of garbage (a writer killed mid-commit)"),
    "corrupt_metadata": ("mcap", "metadata.yaml with a YAML syntax error, storage file cut to its header"),
    "metadata_not_a_mapping": ("mcap", "metadata.yaml holding a list, no storage file"),
    "metadata_wrong_types": ("sqlite3", "metadata.yaml with version 'five' and a string for message_count"),
    "metadata_missing_file": ("mcap", "metadata.yaml naming a storage file that does not exist"),
    "ends_early": ("sqlite3", "metadata.yaml lists twice the messages the db3 holds (rows deleted)"),
    "empty_dir": ("mcap", "an empty directory"),
    "view_db3": ("sqlite3", "db3 whose messages table is a recursive VIEW (a query that never ends)"),
}


def make_hostile_bag(kind: str, root: str | Path, seed: int = 0) -> Path:
    """Write the hostile bag ``kind`` (see :data:`HOSTILE_KINDS`) under ``root``; returns its path."""
    import sqlite3

    import numpy as np

    from .make_bag import synthetic_frames, write_bag
    from .storage import BagWriter, make_header

    if kind not in HOSTILE_KINDS:
        raise ValueError(f"unknown hostile bag kind {kind!r}; choose one of {', '.join(HOSTILE_KINDS)}")
    rng = random.Random(f"{kind}-{seed}")
    storage = HOSTILE_KINDS[kind][0]
    bag = Path(root) / kind
    if kind == "empty_dir":
        bag.mkdir(parents=True)
        return bag
    # truncated_mcap: about 8 MB, several 1 MiB chunks, so the part before the cut is readable
    count, size = (20, (320, 256)) if kind == "truncated_mcap" else (6, (96, 64))
    write_bag(list(synthetic_frames(count, size=size, seed=seed)), bag, storage=storage)
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data = storage_file.read_bytes()
    meta = bag / "metadata.yaml"
    if kind == "truncated_db3":
        storage_file.write_bytes(data[:1000])
    elif kind == "truncated_mcap":
        storage_file.write_bytes(data[: len(data) * rng.randint(55, 80) // 100])
    elif kind == "truncated_mcap_header":
        storage_file.write_bytes(data[:5])
    elif kind == "killed_mcap":
        import shutil

        shutil.rmtree(bag)
        writer = BagWriter(bag, storage="mcap").open()
        writer.add_topic("/visible/image_raw", "sensor_msgs/msg/Image")
        Image = writer.typestore.types["sensor_msgs/msg/Image"]
        for i in range(5):
            msg = Image(header=make_header(writer.typestore, i, "visible_optical_frame"), height=4, width=4,
                        encoding="mono8", is_bigendian=0, step=4, data=np.full(16, i, np.uint8))
            writer.write("/visible/image_raw", 10**9 + i, msg)
        writer.flush()
        writer.abandon()  # what SIGKILL leaves: committed chunks, no summary
    elif kind == "garbage_mcap":
        storage_file.write_bytes(data[:8] + rng.randbytes(3000))
    elif kind == "garbage_db3":
        storage_file.write_bytes(rng.randbytes(8192))
    elif kind == "hot_journal_db3":
        journal = storage_file.with_name(storage_file.name + "-journal")
        journal.write_bytes(bytes.fromhex("d9d505f920a163d7") + rng.randbytes(4096))
    elif kind == "corrupt_metadata":
        meta.write_text("rosbag2_bagfile_information:\n  version: [5\n  storage: {\n")
        storage_file.write_bytes(data[:200])
    elif kind == "metadata_not_a_mapping":
        meta.write_text("- just\n- a list\n")
        storage_file.unlink()
    elif kind == "metadata_wrong_types":
        text = meta.read_text().replace("version: 5", "version: five", 1)
        meta.write_text(text.replace("message_count: ", "message_count: many", 1))
    elif kind == "metadata_missing_file":
        meta.write_text(meta.read_text().replace(storage_file.name, "elsewhere.mcap"))
    elif kind == "view_db3":
        with sqlite3.connect(storage_file) as db:
            db.execute("ALTER TABLE messages RENAME TO messages_kept")
            db.execute("CREATE VIEW messages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                       "SELECT i AS id, 1 AS topic_id, i AS timestamp, x'00' AS data FROM n")
    elif kind == "ends_early":
        with sqlite3.connect(storage_file) as db:
            db.execute("DELETE FROM messages WHERE id > (SELECT COUNT(*) / 2 FROM messages)")
    return bag
