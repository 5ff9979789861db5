"""Data at rest: dataset registry and recipes, record types, Zarr replay stores, converters."""
