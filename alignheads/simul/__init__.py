"""Simultaneous translation: policies, the translator, text-stream simulation and its evaluation."""
