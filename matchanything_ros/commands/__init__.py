"""CLI subcommands, one module each (see ``matchanything_ros.cli``).

A command module must import nothing heavy (torch, onnxruntime, rclpy) at module level: the
parser imports every module to build ``--help``.
"""


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# subcommand -> (module, one-line help); order is the order shown in --help
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("matchanything_ros.commands.demo", "run the pipeline on built-in synthetic pairs and write a visualisation"),
    "match": ("matchanything_ros.commands.match", "match a visible and a thermal image file"),
    "accuracy": ("matchanything_ros.commands.accuracy", "accuracy protocol on aligned visible/thermal pairs (benchmark)"),
    "weights": ("matchanything_ros.commands.weights", "locate or download MatchAnything-ELoFTR weights"),
    "export": ("matchanything_ros.commands.export", "export MatchAnything-ELoFTR to ONNX"),
    "build-engine": ("matchanything_ros.commands.build_engine", "build a TensorRT engine from the ONNX export"),
    "parity": ("matchanything_ros.commands.parity", "compare MatchAnything-ELoFTR with the authors' reference outputs"),
    "benchmark": ("matchanything_ros.commands.benchmark", "latency/memory benchmark: backend x resolution x precision"),
    "make-bag": ("matchanything_ros.commands.make_bag", "write a ROS 2 bag of visible/thermal pairs with ground truth"),
    "replay": ("matchanything_ros.commands.replay", "run the node's pipeline over a ROS 2 bag, write an output bag"),
    "evaluate": ("matchanything_ros.commands.evaluate", "score a replayed bag against ground truth, write a report"),
    "fleet": ("matchanything_ros.commands.fleet", "replay and evaluate many bags (a folder, glob or list), on Ray or here"),
    "bag": ("matchanything_ros.commands.bag", "bag tools: repair a bag that was not closed (killed recorder, power loss)"),
}
