"""MQTT delivery: the sink, its durable spool, credentials and Home Assistant discovery."""
