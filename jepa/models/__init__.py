"""Plain-PyTorch models: the video ViT encoder and the masked-latent predictor."""

from jepa.models.predictor import MaskedPredictor, default_predictor_size
from jepa.models.vit import PRESETS, VideoViT

__all__ = ["PRESETS", "MaskedPredictor", "VideoViT", "default_predictor_size"]
