"""Uplink states recorded per source and the reaction to one monitor event."""
