"""Generation-time green-list watermark (Kirchenbauer et al. 2023) and its detector.

    scheme = WatermarkScheme.from_env("SYNTHLOOM_WM_KEY", n_vocab=49152)
    model = EmbeddedModel(logits_processors=(GreenListProcessor(scheme),))
    # or: EmbeddedModel(watermark_key_env="SYNTHLOOM_WM_KEY")
    Detector(scheme, tokenize).score(text).z

See docs/watermark.md for the scheme and measured detection rates.
"""

from synthloom.watermark.detector import Detection, Detector, z_threshold
from synthloom.watermark.processor import GreenListProcessor
from synthloom.watermark.scheme import WatermarkScheme, key_from_env, key_id

__all__ = [
    "Detection", "Detector", "GreenListProcessor", "WatermarkScheme", "key_from_env", "key_id", "z_threshold",
]
