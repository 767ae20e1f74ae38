"""Params-file reader and parameter table (ROS-free)."""
import pytest

from matchanything_ros.node.config import NodeConfig, load_params_file, parameter_specs, split_parameters
from matchanything_ros.pipeline import PipelineConfig


def _write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_nested_and_dotted_names_and_wildcard_section(tmp_path):
    path = _write(
        tmp_path,
        """
/**:
  ros__parameters:
    use_sim_time: true
    sync: {slop: 0.5}
    model: xfeat
matcher_node:
  ros__parameters:
    geometry: essential
    sync.queue_size: 7
    thermal: {mode: minmax, clahe: true}
    qos: {reliability: reliable}
    publish: {debug_image: true}
other_node:
  ros__parameters:
    unrelated: 1
""",
    )
    node, pipe = load_params_file(path)
    assert isinstance(node, NodeConfig) and isinstance(pipe, PipelineConfig)
    assert node.sync.slop == 0.5 and node.sync.queue_size == 7
    assert node.qos.reliability == "reliable" and node.publish.debug_image
    assert pipe.model == "xfeat" and pipe.geometry == "essential"
    assert pipe.thermal.mode == "minmax" and pipe.thermal.clahe


def test_node_section_overrides_wildcard_and_namespaced_name(tmp_path):
    path = _write(
        tmp_path,
        """
/rig/matcher_node:
  ros__parameters: {resolution: 320}
/**:
  ros__parameters: {resolution: 480, sync: {slop: 1.0}}
""",
    )
    node, pipe = load_params_file(path)
    assert pipe.resolution == 320
    assert node.sync.slop == 1.0


@pytest.mark.parametrize(
    "body,match",
    [
        ("matcher_node:\n  ros__parameters: {resoltion: 3}\n", "unknown parameter"),
        ("matcher_node:\n  ros__parameters: {resolution: '640'}\n", "must be of type int"),
        # strict like ROS: an integer for a double parameter is rejected, with the fix
        ("matcher_node:\n  ros__parameters: {sync: {slop: 1}}\n", r"write 1\.0"),
        ("matcher_node:\n  ros__parameters: {geometry: plane}\n", "must be one of"),
        ("matcher_node:\n  ros__parameters: {sync: {slop: 0.0}}\n", "sync.slop"),
        ("matcher_node:\n  ros__parameters: {resolution: 10}\n", "resolution"),
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: 1.0}\n", r"min_inlier_ratio must be in \[0, 1\)"),
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: -0.1}\n", r"min_inlier_ratio must be in \[0, 1\)"),
        # an integer for a double: the same clear type error as for sync.slop
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: 0}\n", r"'min_inlier_ratio' .* float.*write 0\.0"),
        ("some_node:\n  ros__parameters: {model: sift}\n", "no section for node 'matcher_node'"),
        ("matcher_node:\n  model: sift\n", "ros__parameters"),
        ("[1, 2\n", "not valid YAML"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, body, match):
    with pytest.raises(ValueError, match=match):
        load_params_file(_write(tmp_path, body))


def test_missing_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_params_file(tmp_path / "nope.yaml")


def test_presets_load(repo_root):
    node, pipe = load_params_file(repo_root / "config" / "driving_rig.yaml")
    assert pipe.geometry == "essential" and node.topics.use_camera_info and node.publish.pose
    node, pipe = load_params_file(repo_root / "config" / "uav_nadir.yaml")
    assert pipe.geometry == "homography" and node.publish.registered
    assert pipe.min_inlier_ratio == 0.0  # listed in the presets, off (docs/ACCURACY.md)


def test_min_inlier_ratio_is_a_pipeline_parameter(tmp_path):
    spec = {s.name: s for s in parameter_specs()}["min_inlier_ratio"]
    assert spec.kind is float and spec.default == 0.0 and not spec.read_only
    assert (spec.min_value, spec.max_value) == (0.0, 1.0) and "LOW_INLIER_RATIO" in spec.description
    _, pipe = load_params_file(_write(tmp_path, "matcher_node:\n  ros__parameters: {min_inlier_ratio: 0.15}\n"))
    assert pipe.min_inlier_ratio == 0.15
    _, pipe = split_parameters({"min_inlier_ratio": 0.0})
    assert pipe == PipelineConfig()


def test_parameter_specs_cover_both_configs_with_defaults():
    specs = {s.name: s for s in parameter_specs()}
    assert specs["sync.slop"].default == NodeConfig().sync.slop
    assert specs["thermal.mode"].choices and specs["topics.visible_image"].read_only
    assert all(s.description for s in specs.values())
    assert not specs["geometry"].read_only and specs["resolution"].min_value == 64
    node, pipe = split_parameters({s.name: s.default for s in specs.values()})
    assert node == NodeConfig() and pipe == PipelineConfig()


def test_stamp_and_limit_parameters_are_validated(tmp_path):
    from matchanything_ros.node.config import runtime_problem

    specs = {s.name: s for s in parameter_specs()}
    assert specs["limits.max_pixels"].default == NodeConfig().limits.max_pixels and specs["stamps.max_future"].description
    for bad in ("{stamps: {max_future: -1.0}}", "{limits: {min_side: 0}}", "{match_threshold: 1.0}"):
        path = tmp_path / "p.yaml"
        path.write_text(f"matcher_node:\n  ros__parameters: {bad}\n")
        with pytest.raises(ValueError):
            load_params_file(path)
    # a runtime change must name a matcher that can be built now
    assert runtime_problem(PipelineConfig(model="xfeat")) is None
    assert "not found" in runtime_problem(PipelineConfig(model="auto", weights=str(tmp_path / "none.safetensors")))
