"""digest: the daily email digest of a Russian defence-industry news site."""

__version__ = "0.1.0"
