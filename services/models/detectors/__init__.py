"""Detector backends behind one interface, chosen by a discriminated config (`type`)."""

from services.models.detectors.base import Detector, DetectorConfig, DetectorError, build_detector

__all__ = ["Detector", "DetectorConfig", "DetectorError", "build_detector"]
