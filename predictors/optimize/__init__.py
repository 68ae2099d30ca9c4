"""`tickserve optimize`: PyTorch/ONNX -> ONNX variants (optimised, INT8, FP16), parity-gated and benchmarked."""
