"""Running builds on a Dask cluster."""
