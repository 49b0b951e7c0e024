"""mailbot: collects periodic Word progress reports by email and chases late units."""

__version__ = "0.1.0"
