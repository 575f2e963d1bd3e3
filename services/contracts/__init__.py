"""Event contracts: Python code generated from proto/radstream/v1 (do not edit v1/ by hand)."""
