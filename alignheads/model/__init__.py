"""Models and what runs inside them: loading, prompts, q/k capture, attention replay, KV reuse."""
