"""Test support: a local broker, daemon subprocess helpers, the picamera2 fake, the MQTT driver."""
