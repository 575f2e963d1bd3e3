"""Command-line interface: `radstream up | run | topics | tail | doctor | demo`."""
