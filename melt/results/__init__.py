"""The on-disk results layout (DESIGN.md), its writers and readers, and the catalog of runs."""
