"""Stage `metrics`."""
