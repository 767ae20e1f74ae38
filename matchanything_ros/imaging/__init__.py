"""Image plumbing: ROS image buffers <-> numpy, and thermal normalisation to 8-bit."""
from .encodings import (
    ImageBuffer,
    ImageFormatError,
    decode_compressed,
    encoding_info,
    image_to_numpy,
    msg_to_numpy,
    numpy_to_image,
    supported_encodings,
    to_bgr8,
    to_mono,
)
from .thermal import THERMAL_MODES, ThermalConfig, normalize_thermal

__all__ = [
    "ImageBuffer",
    "ImageFormatError",
    "THERMAL_MODES",
    "ThermalConfig",
    "decode_compressed",
    "encoding_info",
    "image_to_numpy",
    "msg_to_numpy",
    "normalize_thermal",
    "numpy_to_image",
    "supported_encodings",
    "to_bgr8",
    "to_mono",
]
