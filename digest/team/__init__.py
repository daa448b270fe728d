"""The team behind the digest: who may use the desk, and their sessions."""
