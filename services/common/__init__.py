"""Infrastructure shared by every Vigil service: settings, bus, gRPC runtime, logging, metrics."""
