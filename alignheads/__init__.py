"""alignheads: find, score and use alignment heads of decoder-only LLMs for simultaneous translation."""

__version__ = "0.1.0"
