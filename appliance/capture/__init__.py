"""Frame sources (cameras, streams, files, image-folder replay) and image decoding."""
from appliance.capture.images import decode_image, read_image
from appliance.capture.sources import Frame, FrameSource, open_source

__all__ = ["Frame", "FrameSource", "decode_image", "open_source", "read_image"]
