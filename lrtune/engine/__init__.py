"""The sweep engine on the driver: running Ray Tune, the Parquet sink, locks and housekeeping."""
