"""The node on image_transport's compressed transport, over DDS: a visible camera publishing
JPEG and a thermal camera publishing 16-bit PNG (sensor_msgs/CompressedImage on
<topic>/compressed), as most cameras and recorded drives carry them."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("sensor_msgs.msg")

from matchanything_ros.synthetic import make_planar_pair  # noqa: E402
from test_node import PARAMS, SIZE, WAIT, _cloud, _wait, next_stamp, running_node  # noqa: E402


@pytest.fixture(scope="module")
def compressed_node(tmp_path_factory):
    params = PARAMS + "    topics: {visible_transport: compressed, thermal_transport: compressed}\n"
    with running_node(tmp_path_factory.mktemp("node_cmp"), params, compressed=(True, True)) as h:
        yield h


def test_compressed_pairs_are_answered_like_raw_ones(compressed_node):
    h = compressed_node
    pair = make_planar_pair(2, size=SIZE)
    stamp = next_stamp()
    h.publish_pair(pair, stamp)
    cloud = _cloud(h.output_for(stamp))
    assert len(cloud) > 12
    registered = h.output_for(stamp, "registered/image")  # published for an OK fit only
    assert (registered.width, registered.height) == SIZE


def test_compressed_garbage_and_bombs_are_counted_not_decoded(compressed_node):
    """A payload that is not JPEG / PNG, and a PNG whose header claims 20000x20000 (decoded it
    would take 400 MB), are dropped on their header and counted; the next pair is answered."""
    import zlib

    h = compressed_node
    before, _ = h.diagnostics()
    h.pub_th.publish(h.compressed_image(b"not an image at all" * 10, "png", next_stamp(), "thermal_cam"))

    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (20000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0]))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 20001 * 4)) + chunk(b"IEND", b""))
    h.pub_th.publish(h.compressed_image(bomb, "png", next_stamp(), "thermal_cam"))

    def counted(values, status):
        return (int(values.get("bad_input.thermal_unknown_encoding", 0)) > int(before.get("bad_input.thermal_unknown_encoding", 0))
                and int(values.get("bad_input.thermal_too_large", 0)) > int(before.get("bad_input.thermal_too_large", 0)))

    h.diagnostics(counted, timeout=WAIT)
    stamp = next_stamp()
    h.publish_pair(make_planar_pair(3, size=SIZE), stamp)
    h.output_for(stamp)
    _wait(lambda: h.proc.poll() is None, 1.0, "node alive")
