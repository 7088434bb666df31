"""Stage `gate`."""
