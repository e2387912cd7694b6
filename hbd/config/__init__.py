"""Heartbeat-compatible configuration: ha.cf, authkeys and haresources as frozen dataclasses."""
