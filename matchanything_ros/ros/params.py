"""Declare the node's parameters (from node.config.parameter_specs) with rclpy descriptors."""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..node.config import ParamSpec, parameter_specs


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """A ParameterDescriptor with description, read-only flag, numeric range and choices."""
    d = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.min_value is not None and spec.kind is float:
        d.floating_point_range = [
            FloatingPointRange(from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)
        ]
    elif spec.min_value is not None and spec.kind is int:
        d.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    return d


def declare_all(node: Any) -> list[ParamSpec]:
    """Declare every matcher parameter on ``node``; values from --params-file / launch apply."""
    specs = parameter_specs()
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))
    return specs


def current_values(node: Any, specs: list[ParamSpec]) -> dict[str, Any]:
    return {spec.name: node.get_parameter(spec.name).value for spec in specs}
