"""Params-file reader and parameter table (ROS-free)."""
import pytest

from matchanything_ros.node.config import NodeConfig, load_params_file, parameter_specs, split_parameters
from matchanything_ros.node.config import params_sections as params_sections_of
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
    node, pipe = load_params_file(path, "matcher_node", "/rig")
    assert pipe.resolution == 320
    assert node.sync.slop == 1.0
    # as rclpy: /rig/matcher_node is not /matcher_node, the wildcard alone applies
    _, pipe = load_params_file(path)
    assert pipe.resolution == 480
    _, pipe = load_params_file(path, "/rig/matcher_node")
    assert pipe.resolution == 320


def test_sections_follow_rclpy_matching(tmp_path):
    from matchanything_ros.node.config import params_files_in_args, params_sections, sections_for_node

    path = _write(tmp_path, """
matcher_node:
  ros__parameters: {resolution: 320}
payload:
  cam:
    ros__parameters: {resolution: 480}
""")
    assert list(params_sections(path)) == ["/matcher_node", "/payload/cam"]
    assert sections_for_node(path, "/matcher_node") == ["/matcher_node"]
    assert sections_for_node(path, "/payload/matcher_node") == []  # key 'matcher_node' misses it
    assert sections_for_node(path, "/x/y") == []
    assert load_params_file(path, "cam", "payload")[1].resolution == 480
    with pytest.raises(ValueError, match="no section for node '/x/y'.*'/\\*\\*:'"):
        load_params_file(path, "y", "/x")
    argv = ["node", "--ros-args", "-r", "__ns:=/x", "--params-file", "a.yaml", "--", "--params-file", "no.yaml",
            "--ros-args", "--params-file", "b.yaml"]
    assert params_files_in_args(argv) == ["a.yaml", "b.yaml"]


def test_presets_apply_in_any_namespace_under_any_name(repo_root):
    for preset in ("uav_nadir", "driving_rig"):
        path = repo_root / "config" / f"{preset}.yaml"
        assert list(params_sections_of(path)) == ["/**"], preset
        assert load_params_file(path, "y", "/x") == load_params_file(path)


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
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: 1.0}\n", r"min_inlier_ratio' must be in \[0.0, 0.99\]"),
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: -0.1}\n", r"min_inlier_ratio' must be in \[0.0, 0.99\]"),
        # an integer for a double: the same clear type error as for sync.slop
        ("matcher_node:\n  ros__parameters: {min_inlier_ratio: 0}\n", r"'min_inlier_ratio' .* float.*write 0\.0"),
        ("some_node:\n  ros__parameters: {model: sift}\n", "no section for node '/matcher_node'"),
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
    assert (spec.min_value, spec.max_value) == (0.0, 0.99) and "LOW_INLIER_RATIO" in spec.description
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


def test_fastdds_profile_variable_follows_the_distro():
    from matchanything_ros.node.dds import profile_env, profile_variable

    assert profile_variable("humble") == profile_variable("jazzy") == "FASTRTPS_DEFAULT_PROFILES_FILE"
    assert profile_variable("kilted") == profile_variable("rolling") == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert profile_variable("") == "FASTDDS_DEFAULT_PROFILES_FILE"  # PyPI wheels: Fast DDS 3
    assert profile_env("/p.xml", "jazzy") == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml"}  # exactly one


# bounds of one parameter that are valid only with a partner value (low < high)
PARTNERS = {
    "thermal.low_percentile": {"thermal.high_percentile": 100.0},
    "thermal.high_percentile": {"thermal.low_percentile": 0.0},
    "thermal.fixed_min": {"thermal.fixed_max": 1.0e6},
    "thermal.fixed_max": {"thermal.fixed_min": -1.0e6},
    # rig: min_frames and recent are bounded by window
    "rig.window": {"rig.min_frames": 1, "rig.recent": 2},
    "rig.min_frames": {"rig.window": 1000},
    "rig.recent": {"rig.window": 1000},
}


def _accepts(name, value) -> bool:
    try:
        split_parameters({name: value, **PARTNERS.get(name, {})})
        return True
    except ValueError:
        return False


def test_descriptors_equal_what_the_node_accepts():
    """Every choice a descriptor lists is accepted, other strings refused; every numeric parameter
    has a range whose bounds are accepted and whose outside is refused; the rclpy descriptor
    carries exactly that range and those choices."""
    params = pytest.importorskip("matchanything_ros.ros.params")
    for spec in parameter_specs():
        d = params.descriptor(spec)
        if spec.kind is str and spec.choices:
            assert d.additional_constraints == "one of: " + ", ".join(spec.choices), spec.name
            for choice in spec.choices:
                assert _accepts(spec.name, choice), (spec.name, choice)
            assert not _accepts(spec.name, "not_a_choice"), spec.name
        if spec.kind in (int, float):
            assert spec.min_value is not None, f"{spec.name}: numeric parameter without a range"
            lo, hi = spec.min_value, spec.max_value
            step = 1 if spec.kind is int else max(1e-6, 1e-6 * abs(hi - lo))
            for value in (lo, hi, spec.default):
                assert _accepts(spec.name, spec.kind(value)), (spec.name, value)
            for value in (lo - step, hi + step):
                assert not _accepts(spec.name, spec.kind(value)), (spec.name, value)
            ranges = d.integer_range if spec.kind is int else d.floating_point_range
            assert len(ranges) == 1 and (ranges[0].from_value, ranges[0].to_value) == (lo, hi), spec.name
    specs = {s.name: s for s in parameter_specs()}
    assert "none" in specs["geometry"].choices and "none" in specs["geometry"].description


def test_docs_parameter_table_lists_every_range_and_choice(repo_root):
    rows = {}
    for line in (repo_root / "docs" / "NODE.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and cells[1].startswith("`") and cells[1].strip("`") in {s.name for s in parameter_specs()}:
            rows[cells[1].strip("`")] = cells[4]
    for spec in parameter_specs():
        assert spec.name in rows, f"docs/NODE.md parameter table misses {spec.name}"
        if spec.choices:
            assert rows[spec.name] == ", ".join(spec.choices), spec.name
        elif spec.min_value is not None:
            assert rows[spec.name] == f"[{spec.min_value}, {spec.max_value}]", (spec.name, rows[spec.name])
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
    # ... and a backend / device this machine has (the node refused these only after accepting)
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        assert "no CUDA GPU" in runtime_problem(PipelineConfig(model="xfeat", device="cuda"))
        assert "no CUDA GPU" in runtime_problem(PipelineConfig(model="minima_splg", device="cuda"))
    if importlib.util.find_spec("tensorrt") is None:
        assert "tensorrt" in runtime_problem(PipelineConfig(model="matchanything_eloftr", backend="tensorrt"))
    assert runtime_problem(PipelineConfig(model="sift", device="cuda")) is None  # SIFT takes no device


def test_frames_and_the_output_file_are_validated(tmp_path):
    """A frame id is a frame id; the calibration file is a start-up parameter whose folder
    exists and which is a regular file or nothing yet (issue 18: a parameter that wrote anywhere)."""
    import os

    from matchanything_ros.node.config import valid_frame_id

    assert valid_frame_id("thermal_optical_frame") and valid_frame_id("uav/ir-1.optical")
    for bad in ("x ; touch PWNED", "a b", "$(id)", "'q'", "a\nb", "-x", "/abs", "", "f" * 300):
        assert not valid_frame_id(bad), bad
        if bad:
            with pytest.raises(ValueError, match="frames.visible must be a frame id"):
                NodeConfig.from_flat({"frames.visible": bad})
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for path, message in ((tmp_path / "no" / "rig.yaml", "does not exist"), (tmp_path / "fifo", "not a regular file"),
                          (tmp_path / "link", "not a regular file"), (tmp_path, "not a regular file")):
        with pytest.raises(ValueError, match=message):
            NodeConfig.from_flat({"output.rig_calibration_file": str(path)})
    assert NodeConfig.from_flat({"output.rig_calibration_file": str(tmp_path / "rig.yaml")})
    specs = {s.name: s for s in parameter_specs()}
    assert specs["output.rig_calibration_file"].read_only and not specs["frames.visible"].read_only
