"""mnv1-edge: MobileNet v1 0.25/128 on Raspberry Pi-class cameras, from converter to systemd service."""

__version__ = "0.1.0"
