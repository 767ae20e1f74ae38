"""``matcher_lifecycle_node``: matcher_node as a ROS 2 managed (lifecycle) node.

The same node (matcher_node.py) with its start-up split over the standard transitions, so that
a launch system or an operator decides when the model loads and when matching starts:

* unconfigured (after start): parameters declared and checked; nothing loaded or subscribed;
* configure: the pipeline is built (model and weights loaded: a failure returns FAILURE with the
  reason in the log and the node stays unconfigured) and the publishers created;
* activate: the image / CameraInfo subscriptions, the worker and /diagnostics start;
* deactivate: subscriptions, worker and diagnostics stop (nothing is published), the model stays
  loaded;
* cleanup: the model and the publishers are freed (back to unconfigured); shutdown: all of it.

Parameters can be set in any state; before configure they are only validated (configure builds
from them). Drive it with ``ros2 lifecycle set /matcher_node configure`` / ``activate``, or
``ros2 launch matchanything_ros matcher.launch.py managed:=true`` (docs/NODE.md).
"""
from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from .matcher_node import MatcherNode, _params_files_problem, _shutdown


class MatcherLifecycleNode(LifecycleNodeMixin, MatcherNode):
    """matcher_node with the lifecycle state machine (see the module docstring)."""

    def __init__(self, argv: list[str] | None = None, **kwargs: Any):
        MatcherNode.__init__(self, argv, start=False, **kwargs)
        LifecycleNodeMixin.__init__(self)

    def _stage(self, name: str, stage) -> TransitionCallbackReturn:
        try:
            stage()
        except Exception as exc:  # a model that does not load, weights refused, ...: stay put
            self.get_logger().error(f"{name} failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._stage("configure", self.configure_stage)
        if result != TransitionCallbackReturn.SUCCESS:
            self.cleanup_stage()
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._stage("activate", self.activate_stage)
        return result if result != TransitionCallbackReturn.SUCCESS else super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._stage("deactivate", self.deactivate_stage)
        return result if result != TransitionCallbackReturn.SUCCESS else super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._stage("cleanup", self.cleanup_stage)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        def everything() -> None:
            self.deactivate_stage()
            self.cleanup_stage()

        return self._stage("shutdown", everything)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate_stage()
        self.cleanup_stage()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: configure may be retried


def main(args: list[str] | None = None) -> int:
    """Console script ``matcher_lifecycle_node``: starts unconfigured."""
    from rclpy.executors import ExternalShutdownException

    from ..node.malloc_tuning import tune_malloc
    from ..node.threads import prepare_openmp

    argv = sys.argv if args is None else args
    problem = _params_files_problem(argv)
    if problem:
        print(f"[FATAL] [matcher_node]: cannot start: {problem}", file=sys.stderr)
        return 1
    prepare_openmp()  # before torch loads libgomp, as matcher_node
    tune_malloc()
    try:
        rclpy.init(args=args)
    except Exception as exc:
        print(f"[FATAL] [matcher_node]: cannot start: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    node = None
    try:
        node = MatcherLifecycleNode(argv=argv)
        node.get_logger().info("managed matcher_node started unconfigured: configure loads the model, "
                               "activate starts matching")
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad parameter values at start-up
        if rclpy.ok():
            rclpy.logging.get_logger("matcher_node").fatal(f"cannot start: {exc}")
            return 1
    finally:
        _shutdown(node)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
