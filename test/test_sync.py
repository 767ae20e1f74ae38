"""ApproximateTimeSynchronizer: message_filters pairing rules, queue bounds, backwards stamps."""
import random
import threading

import pytest

from matchanything_ros.node.sync import NS_PER_S, ApproximateTimeSynchronizer

MS = 1_000_000


def test_exact_and_jittered_pairs_within_slop():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.010)
    assert sync.add(0, 100 * MS, "v0") == []
    assert sync.add(1, 104 * MS, "t0") == [("v0", "t0")]
    # thermal first this time: output order is still stream order
    assert sync.add(1, 200 * MS, "t1") == []
    assert sync.add(0, 197 * MS, "v1") == [("v1", "t1")]
    assert sync.stats.matched == 2
    assert sync.queued(0) == [] and sync.queued(1) == []


def test_beyond_slop_never_pairs_and_slop_is_strict():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.010)
    assert sync.add(0, 0, "v") == []
    assert sync.add(1, 11 * MS, "t") == []  # 11 ms apart
    assert sync.add(1, 10 * MS, "t-exact") == []  # exactly slop: message_filters needs < slop
    assert sync.queued(0) == [0]


def test_closest_partner_is_chosen():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.050)
    sync.add(1, 70 * MS, "t70")
    sync.add(1, 95 * MS, "t95")
    sync.add(1, 130 * MS, "t130")
    assert sync.add(0, 100 * MS, "v100") == [("v100", "t95")]
    assert sync.queued(1) == [70 * MS, 130 * MS]


def test_three_streams_need_all_within_slop():
    sync = ApproximateTimeSynchronizer(3, queue_size=5, slop=0.010)
    assert sync.add(0, 100 * MS, "a") == []
    assert sync.add(1, 108 * MS, "b") == []
    # c is within slop of a but the spread c..b is 18 ms > slop
    assert sync.add(2, 90 * MS, "c") == []
    assert sync.add(2, 103 * MS, "c2") == [("a", "b", "c2")]


def test_queue_size_bounds_each_stream_and_evicts_oldest():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.001)
    for i in range(10):
        sync.add(0, i * 100 * MS, i)
    assert sync.queued(0) == [700 * MS, 800 * MS, 900 * MS]
    assert sync.stats.evicted == 7
    # an evicted stamp can no longer pair
    assert sync.add(1, 100 * MS, "late") == []
    assert sync.add(1, 800 * MS, "t") == [(8, "t")]


def test_same_stamp_replaces_queued_message():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=0.01)
    sync.add(0, 5 * MS, "old")
    sync.add(0, 5 * MS, "new")
    assert sync.add(1, 5 * MS, "t") == [("new", "t")]


def test_backwards_stamps_are_dropped_and_counted():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01)
    sync.add(0, 450 * MS, "v450")
    sync.add(0, 500 * MS, "v500")
    assert sync.add(0, 400 * MS, "v400") == []  # went back behind the two newest: dropped
    assert sync.stats.backwards == 1
    assert sync.queued(0) == [450 * MS, 500 * MS]
    # the other stream is independent: an older thermal stamp is fine there
    assert sync.add(1, 401 * MS, "t401") == []
    assert sync.add(1, 499 * MS, "t499") == [("v500", "t499")]
    # one outlier ahead does not move the bar: older than it but newer than the one before is fine
    sync.add(0, 900 * MS, "v900")
    assert sync.add(0, 600 * MS, "v600") == [] and sync.stats.backwards == 1
    assert sync.queued(0) == [450 * MS, 600 * MS, 900 * MS]


def test_large_backward_jump_is_a_time_reset_once_confirmed():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01, reset_threshold_ns=1 * NS_PER_S)
    sync.add(0, 99 * NS_PER_S, "v-before0")
    sync.add(0, 100 * NS_PER_S, "v-before")
    sync.add(1, 49 * NS_PER_S, "t-unpaired0")
    sync.add(1, 50 * NS_PER_S, "t-unpaired")
    assert sync.add(0, 2 * NS_PER_S, "v-after") == []  # bag looped? held until confirmed
    assert sync.stats.resets == 0 and sync.queued(0) == [99 * NS_PER_S, 100 * NS_PER_S]
    assert sync.add(0, 2 * NS_PER_S + 100 * MS, "v-after2") == []  # confirmed: reset this stream
    assert sync.stats.resets == 1 and sync.stats.backwards == 0
    assert sync.queued(0) == [2 * NS_PER_S, 2 * NS_PER_S + 100 * MS]
    assert sync.add(1, 2 * NS_PER_S + 3 * MS, "t") == []  # thermal: held too, it jumped back as well
    assert sync.add(1, 2 * NS_PER_S + 102 * MS, "t2") == [("v-after", "t"), ("v-after2", "t2")]
    assert sync.stats.resets == 2


def test_one_far_future_stamp_does_not_blind_the_stream():
    """issue 9: a single image stamped 2.5 s ahead made every later image 'backwards'."""
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01)
    pairs = []
    for k in range(30):
        t = 10 * NS_PER_S + k * 100 * MS
        if k == 5:
            pairs += sync.add(0, t + 2500 * MS, "outlier")
        pairs += sync.add(0, t, f"v{k}")
        pairs += sync.add(1, t + MS, f"t{k}")
    assert [p[0] for p in pairs] == [f"v{k}" for k in range(30)]
    assert sync.stats.backwards == 0


@pytest.mark.parametrize("every", [None, 8], ids=["once", "every_0.8s"])
def test_two_future_stamps_cost_only_their_own_pairs(every):
    """Issue 18, item 2: two images stamped now+0.90 s and now+0.95 s (inside max_future) had
    made the following valid images 'backwards' (11 of 20 pairs answered); two such every 0.8 s
    blinded the stream (0 of 40)."""
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01, max_future_ns=NS_PER_S)
    pairs = []
    for k in range(40):
        now = 10 * NS_PER_S + k * 100 * MS  # the clock, and the valid stamps, at 10 Hz
        if k == 3 or (every and k % every == 3):
            pairs += sync.add(0, now + 900 * MS, "ahead1", now_ns=now)
            pairs += sync.add(0, now + 950 * MS, "ahead2", now_ns=now)
        pairs += sync.add(0, now, f"v{k}", now_ns=now)
        pairs += sync.add(1, now + MS, f"t{k}", now_ns=now)
    assert [p[0] for p in pairs] == [f"v{k}" for k in range(40)]
    assert sync.stats.backwards == 0


def test_one_far_past_stamp_is_an_outlier_not_a_reset():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01)
    pairs, rejected = [], []
    for k in range(20):
        t = 1000 * NS_PER_S + k * 100 * MS
        if k == 5:
            got, why = sync.offer(0, 1 * NS_PER_S, "ancient")
            pairs += got
            rejected += why
        got, why = sync.offer(0, t, f"v{k}")
        pairs += got
        rejected += why
        pairs += sync.add(1, t, f"t{k}")
    assert len(pairs) == 20 and sync.stats.resets == 0
    assert rejected == ["stamp_outlier"]


def test_future_stamps_rejected_against_a_meaningful_clock_only():
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=0.01, max_future_ns=NS_PER_S)
    now = 500 * NS_PER_S
    assert sync.offer(0, now + 2 * NS_PER_S, "v", now_ns=now) == ([], ["stamp_future"])
    assert sync.offer(0, now + 500 * MS, "v", now_ns=now) == ([], [])  # within tolerance
    assert sync.offer(0, now + 5 * NS_PER_S, "v", now_ns=0) == ([], [])  # clock not running (sim time)
    assert sync.gate.rejected == {"stamp_future": 1}


@pytest.mark.parametrize("sec, nanosec, reason", [
    (5, 4294967295, "stamp_invalid"), (5, 10**9, "stamp_invalid"), (-1, 0, "stamp_invalid"), (0, 0, "stamp_zero"),
])
def test_stamp_problem(sec, nanosec, reason):
    from types import SimpleNamespace

    from matchanything_ros.node.sync import stamp_problem

    assert stamp_problem(SimpleNamespace(sec=sec, nanosec=nanosec))[0] == reason
    assert stamp_problem(SimpleNamespace(sec=sec, nanosec=0) if sec > 0 else SimpleNamespace(sec=1, nanosec=1)) is None


def test_matches_message_filters_reference_on_random_stream():
    """Cross-check against a direct transcription of message_filters' rule on a jittered,
    lossy stream (reference kept deliberately naive)."""
    rng = random.Random(4)
    slop = 0.015
    sync = ApproximateTimeSynchronizer(2, queue_size=4, slop=slop)
    ref_queues = [{}, {}]
    ref_out, out = [], []

    def ref_add(i, stamp, msg):
        q = ref_queues[i]
        q[stamp] = msg
        while len(q) > 4:
            del q[min(q)]
        other = ref_queues[1 - i]
        near = sorted((s for s in other if abs(s - stamp) <= slop * NS_PER_S), key=lambda s: abs(s - stamp))
        for s in near:
            if abs(s - stamp) < slop * NS_PER_S and stamp in q:
                pair = [None, None]
                pair[i], pair[1 - i] = q.pop(stamp), other.pop(s)
                ref_out.append(tuple(pair))
                return

    events = []
    for k in range(300):
        base = k * 33 * MS
        for i in (0, 1):
            if rng.random() < 0.15:
                continue  # lost frame
            events.append((base + rng.randint(-12, 12) * MS + (i * 2 * MS), i, f"{i}:{k}"))
    # arrival order differs from stamp order only across streams (per-stream stamps increase)
    events.sort(key=lambda e: (e[0] + rng.randint(0, 20) * MS))
    last = [-1, -1]
    for stamp, i, msg in events:
        if stamp <= last[i]:
            continue
        last[i] = stamp
        out.extend(sync.add(i, stamp, msg))
        ref_add(i, stamp, msg)
    assert out == ref_out
    assert len(out) > 150


def test_thread_safety_under_concurrent_adds():
    sync = ApproximateTimeSynchronizer(2, queue_size=50, slop=0.001)
    results = []
    lock = threading.Lock()

    def feed(i):
        for k in range(500):
            got = sync.add(i, k * 10 * MS, (i, k))
            with lock:
                results.extend(got)

    threads = [threading.Thread(target=feed, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a[1] == b[1] for a, b in results)
    # every message is accounted for exactly once: paired, evicted or still queued
    assert len(results) == sync.stats.matched > 0
    assert 2 * len(results) + sync.stats.evicted + len(sync.queued(0)) + len(sync.queued(1)) == 1000


@pytest.mark.parametrize(
    "kwargs",
    [dict(num_streams=1, queue_size=1, slop=0.1), dict(num_streams=2, queue_size=0, slop=0.1), dict(num_streams=2, queue_size=1, slop=-1)],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(**kwargs)


def test_byte_bound_evicts_the_oldest_and_counts_them():
    """queue_size bounds a count; max_bytes bounds memory: 1 MiB images, 3.5 MiB allowed, so at
    most 3 wait per stream; the evicted ones are counted, what pairs leaves the tally."""
    import numpy as np
    from types import SimpleNamespace as NS

    from matchanything_ros.node.sync import message_bytes

    def img(nbytes):
        return NS(data=np.zeros(nbytes, np.uint8))

    mib = 2**20
    assert message_bytes(img(mib)) == mib and message_bytes(NS(data=bytes(10))) == 10 and message_bytes(NS()) == 0
    sync = ApproximateTimeSynchronizer(2, queue_size=1000, slop=0.01, max_bytes=int(3.5 * mib))
    for i in range(10):  # unpaired visible images
        sync.add(0, (i + 1) * NS_PER_S, img(mib))
    assert sync.queued(0) == [8 * NS_PER_S, 9 * NS_PER_S, 10 * NS_PER_S]
    assert sync.stats.evicted == 7
    assert sync.add(1, 10 * NS_PER_S, img(mib))  # pairs with the newest
    assert sync._bytes == [2 * mib, 0]
    huge = img(8 * mib)  # larger than the bound alone: it still waits (the newest always stays)
    sync.add(1, 20 * NS_PER_S, huge)
    assert sync.queued(1) == [20 * NS_PER_S]
