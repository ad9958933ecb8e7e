"""Generation-time green-list watermark (Kirchenbauer et al. 2023) and its detector.

    scheme = WatermarkScheme.from_env("SYNTHLOOM_WM_KEY", n_vocab=49152)
    model = EmbeddedModel(logits_processors=(GreenListProcessor(scheme),))
    # or: EmbeddedModel(watermark_key_env="SYNTHLOOM_WM_KEY")
    Detector(scheme, tokenize).score(text).z

See docs/watermark.md for the scheme and measured detection rates.
"""

# the engine applies the green list while it generates (llm/watermark_*.py); this package detects it
from synthloom.llm.watermark_processor import GreenListProcessor
from synthloom.llm.watermark_scheme import WatermarkScheme, key_from_env, key_id
from synthloom.watermark.detector import Detection, Detector, z_threshold

__all__ = [
    "Detection", "Detector", "GreenListProcessor", "WatermarkScheme", "key_from_env", "key_id", "z_threshold",
]
