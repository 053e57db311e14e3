"""Device profiles (what and where a device is) and transports (how to talk to it)."""
