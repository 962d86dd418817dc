"""Quick, Draw! doodle recognition: a reproducible DVC pipeline."""
