"""Serving: the WhisperLiveKit AlignAtt protocol server and the SimulStream processor."""
