"""Online anomaly models (River) and the post-processing that makes their scores usable."""
