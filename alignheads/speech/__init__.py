"""Speech in: audio, VAD, streaming ASR, the stabiliser and the full cascade with its outputs."""
