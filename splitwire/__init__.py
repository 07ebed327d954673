"""splitwire: split computing over thin uplinks (export, serve, demo)."""
