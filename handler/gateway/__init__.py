"""Live fan-out of a segment to NATS (`fh gateway`): gateway (the follower and publisher), settings
([gateway] in fh.toml), natsrv (local nats-server clusters for tests, benchmarks and labs), cli."""
