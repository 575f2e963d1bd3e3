"""Plumbing shared by every radstream service: envelope, bus, delivery, blob store, settings."""
