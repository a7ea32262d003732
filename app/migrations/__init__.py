"""Database migrations for the demo app: the Heartbeat table and the heartbeat schedule."""
