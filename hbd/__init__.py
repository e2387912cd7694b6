"""hbd: a high-availability heartbeat daemon for two-box appliances.

hbd reads Linux-HA Heartbeat 3 configuration (ha.cf, authkeys, haresources) unchanged,
speaks Heartbeat 3.0.6's wire format, and adds compact authenticated frames, a
link-redundancy policy and watchdog fencing.
"""

__version__ = "0.1.0"
