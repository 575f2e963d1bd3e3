"""The ``restructure`` service: free-text radiology reports into template-based structured reports.

Templates are data (:mod:`radstream.restructure.template`, files in ``templates/``); the
pipeline turns a report's text into an instance of a template, grounded in the source text.
"""
