"""Trained components radstream ships (see radstream.restructure.classifier)."""
