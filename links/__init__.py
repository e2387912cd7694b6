"""Link drivers, installed as `hbd.links`: serial, UDP (bcast/mcast/ucast) and ping paths.

Each driver owns one file descriptor, turns readiness into received bytes and sends
frames without ever blocking the daemon's event loop.
"""
