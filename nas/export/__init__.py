"""The export of a winner: ONNX Runtime checked against PyTorch (the exporter itself is ``profilers.onnx``)."""
