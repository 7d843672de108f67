"""Training the gate's detector (DAT section 3.2.1): COCO weights rebuilt from ONNX, the CCTV dataset, ultralytics."""
