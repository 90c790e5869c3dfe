"""A shop API with a maintenance switch in its settings."""
