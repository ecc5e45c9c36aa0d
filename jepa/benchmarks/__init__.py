"""Benchmarks behind ``jepa bench`` and ``make bench``; each prints ratios measured side by side
in one run: ``data`` (loader vs decode-only limit vs naive full decode), ``train`` (training-step
clips/s and model FLOP utilisation), ``plan`` (seconds per replan at reference and recipe
settings)."""
