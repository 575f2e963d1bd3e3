"""The standing fuzz harness: property-based and mutation fuzzing of every outside-input parser.

``make test`` runs each target with a small, derandomized budget; ``make fuzz`` runs the full
budget (``FUZZ_BUDGET`` inputs per target). See docs/fuzzing.md.
"""
