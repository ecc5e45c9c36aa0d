"""JEPA video world models: self-supervised video pretraining by prediction in latent space,
frozen-encoder probes, action-conditioned world models and latent planning."""

__version__ = "0.1.0"
