"""The on-device daemon: capture, pipeline, the loop driven by signals and systemd, stats."""
