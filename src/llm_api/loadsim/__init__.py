"""The load simulator behind ``llm-api bench``: simulated people, figures, plots, a report."""
