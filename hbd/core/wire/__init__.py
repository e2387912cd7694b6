"""Wire codecs: Heartbeat 3.0.6 classic text and netstring formats, and hbd's native frames."""
