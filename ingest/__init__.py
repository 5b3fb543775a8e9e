"""Ingestion: Hit -> Event through named steps, the durable spool and the single writer."""
