"""KServe predictors serving MLflow models over the Open Inference Protocol (v2): native runtimes for LightGBM,
ONNX, TorchScript and torch.export programs, and mlflow.pyfunc for every other flavor."""
