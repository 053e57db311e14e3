"""melt: on-device benchmarking harness for ML models.

Nothing heavy is imported here: the device-side agent imports this package too, and
`melt --help` must work where the runtimes are missing.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
