"""Launch matcher_node with a preset or params file, a namespace and topic remappings.

  ros2 launch matchanything_ros matcher.launch.py config:=uav_nadir namespace:=payload \
      visible_image:=/cam/rgb/image_raw thermal_image:=/cam/ir/image_raw use_sim_time:=true

Arguments: config (preset name in share/matchanything_ros/config or a path to a params YAML),
namespace, use_sim_time, the four input topics (remapped), dds_profile (Fast DDS XML applied to
this node only; "" keeps the environment's; see docs/NODE.md for why large images need it),
managed (true: the lifecycle node matcher_lifecycle_node, started unconfigured) and autostart
(with managed: configure, then activate, at launch).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "matchanything_ros"
TOPICS = {
    "visible_image": "visible/image_raw",
    "thermal_image": "thermal/image_raw",
    "visible_info": "visible/camera_info",
    "thermal_info": "thermal/camera_info",
}


def _config_path(value: str, share: str) -> str:
    """A preset name ("uav_nadir") or a path to a params YAML."""
    if os.path.isfile(value):
        return os.path.abspath(value)
    preset = os.path.join(share, "config", value if value.endswith(".yaml") else f"{value}.yaml")
    if os.path.isfile(preset):
        return preset
    presets = sorted(f[:-5] for f in os.listdir(os.path.join(share, "config")) if f.endswith(".yaml"))
    raise RuntimeError(f"config {value!r} is neither a file nor a preset; presets: {', '.join(presets)}")


def _launch_node(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    arg = {name: LaunchConfiguration(name).perform(context) for name in (*TOPICS, "config", "namespace",
                                                                          "use_sim_time", "dds_profile",
                                                                          "managed", "autostart")}
    env = {}
    if arg["dds_profile"]:
        profile = arg["dds_profile"]
        if profile == "shm":
            profile = os.path.join(share, "config", "fastdds_shm.xml")
        # Only the variable this distro's Fast DDS reads: FASTRTPS_* up to Jazzy (Fast DDS 2.x),
        # FASTDDS_* from Kilted (3.x, which warns "deprecated" on the old name).
        from matchanything_ros.node.dds import profile_env

        env = profile_env(profile)
    common = dict(
        package=PACKAGE,
        name="matcher_node",
        namespace=arg["namespace"],
        output="screen",
        parameters=[
            _config_path(arg["config"], share),
            {"use_sim_time": _true(arg["use_sim_time"])},
        ],
        remappings=[(default, arg[name]) for name, default in TOPICS.items() if arg[name] != default],
        additional_env=env,
    )
    if not _true(arg["managed"]):
        return [Node(executable="matcher_node", **common)]
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.actions import LifecycleNode
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    node = LifecycleNode(executable="matcher_lifecycle_node", **common)
    if not _true(arg["autostart"]):
        return [node]

    def change(transition: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    # configure at launch; activate once configured (the model is loaded)
    return [
        node,
        RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                               entities=[change(Transition.TRANSITION_ACTIVATE)])),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def _true(value: str) -> bool:
    return value.lower() in ("true", "1", "yes")


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value="uav_nadir",
                                  description="preset name (uav_nadir, driving_rig) or params YAML path"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
            DeclareLaunchArgument("managed", default_value="false",
                                  description="true: the lifecycle (managed) node, started unconfigured"),
            DeclareLaunchArgument("autostart", default_value="false",
                                  description="with managed: configure and activate at launch"),
            DeclareLaunchArgument("dds_profile", default_value="shm",
                                  description="'shm' (shipped Fast DDS profile), an XML path, or '' to keep the environment's"),
            *[DeclareLaunchArgument(name, default_value=default, description=f"input topic ({default})")
              for name, default in TOPICS.items()],
            OpaqueFunction(function=_launch_node),
        ]
    )
