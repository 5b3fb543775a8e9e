"""firstparty: privacy-preserving first-party web analytics on ClickHouse."""

__version__ = "0.1.0"
