"""ingest: reads a camera or a file at a set fps and publishes JPEG frames (edge)."""
