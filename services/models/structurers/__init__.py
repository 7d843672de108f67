"""Structurers: a gated frame and its detections in, a schema-valid event out (DAT 3.2.2)."""
