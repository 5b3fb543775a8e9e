"""The HTTP edge: the beacon endpoint and the tracker script."""
