"""Serving-side value types that appear in FlexFlow's signatures."""

from dataclasses import dataclass


@dataclass
class RotaryEmbeddingMeta:
    apply_rotary_embedding: bool = False
    rope_theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192
