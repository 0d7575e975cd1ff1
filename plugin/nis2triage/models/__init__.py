"""Online anomaly models (River), and what turns their scores into decisions."""
