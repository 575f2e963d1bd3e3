"""The report templates radstream ships (YAML, see radstream.restructure.template)."""
