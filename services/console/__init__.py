"""The operator's console: live alerts with their evidence, Ask, cameras and health, in a browser."""
