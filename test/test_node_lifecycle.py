"""matcher_lifecycle_node over DDS: the managed node's transitions (lifecycle_msgs services),
what each state subscribes and publishes, and a configure that fails on a model it cannot load."""
from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs.srv")

from matchanything_ros.synthetic import make_planar_pair  # noqa: E402
from test_node import PARAMS, SIZE, WAIT, Harness, _wait, next_stamp, running_node  # noqa: E402


@pytest.fixture(scope="module")
def managed(tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("lifecycle"), PARAMS, module="matchanything_ros.ros.lifecycle_node",
                      discover=False) as h:
        yield h


def _call(h: Harness, srv_type, name: str, request):
    client = h.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=WAIT), f"{name} not found"
    future = client.call_async(request)
    _wait(future.done, WAIT, f"{name} response")
    h.node.destroy_client(client)
    return future.result()


def _state(h: Harness) -> str:
    from lifecycle_msgs.srv import GetState

    return _call(h, GetState, "/matcher_node/get_state", GetState.Request()).current_state.label


def _transition(h: Harness, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    return _call(h, ChangeState, "/matcher_node/change_state", request).success


def test_transitions_load_subscribe_and_stop(managed):
    from lifecycle_msgs.msg import Transition

    h = managed
    assert _state(h) == "unconfigured"
    assert h.pub_vis.get_subscription_count() == 0  # nothing subscribed before activate
    # a model this machine cannot build (no MINIMA weights here): configure fails, state kept
    from matchanything_ros.node.config import runtime_problem
    from matchanything_ros.pipeline import PipelineConfig

    if runtime_problem(PipelineConfig(model="minima_splg")) is not None:
        assert all(r.successful for r in h.set_parameters(model="minima_splg"))
        assert not _transition(h, Transition.TRANSITION_CONFIGURE)
        assert _state(h) == "unconfigured"
        assert all(r.successful for r in h.set_parameters(model="xfeat"))
    assert _transition(h, Transition.TRANSITION_CONFIGURE) and _state(h) == "inactive"
    assert h.pub_vis.get_subscription_count() == 0
    assert _transition(h, Transition.TRANSITION_ACTIVATE) and _state(h) == "active"
    _wait(lambda: h.pub_vis.get_subscription_count() > 0 and h.pub_th.get_subscription_count() > 0
          and h.subs[0].get_publisher_count() > 0, WAIT, "the active node's subscriptions")
    stamp = next_stamp()
    h.publish_pair(make_planar_pair(1, size=SIZE), stamp)
    h.output_for(stamp)
    assert _transition(h, Transition.TRANSITION_DEACTIVATE) and _state(h) == "inactive"
    _wait(lambda: h.pub_vis.get_subscription_count() == 0, WAIT, "subscriptions gone when inactive")
    assert _transition(h, Transition.TRANSITION_CLEANUP) and _state(h) == "unconfigured"
    _wait(lambda: h.subs[0].get_publisher_count() == 0, WAIT, "publishers gone after cleanup")
    # and back: configure + activate again, answered again
    assert _transition(h, Transition.TRANSITION_CONFIGURE) and _transition(h, Transition.TRANSITION_ACTIVATE)
    _wait(lambda: h.pub_vis.get_subscription_count() > 0 and h.pub_th.get_subscription_count() > 0
          and h.subs[0].get_publisher_count() > 0, WAIT, "subscriptions after re-activation")
    stamp = next_stamp()
    h.publish_pair(make_planar_pair(2, size=SIZE), stamp)
    h.output_for(stamp)
    assert h.proc.poll() is None
