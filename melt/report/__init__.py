"""Views of results: text/markdown/CSV/JSON exports (the HTML report comes later)."""
