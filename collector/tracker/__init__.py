"""The browser tracker: readable source in src/, built variants beside it (see build.py)."""
