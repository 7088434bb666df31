"""Stage `filter`: see `core` for what it reads, writes and which params it uses."""
