"""The Open Inference Protocol (KServe v2) as tickserve speaks it, shared by the predictor and the transformer.

- `names`: the tensor names both sides agree on (the packed features input, the probabilities output).
- `wire`: decoding REST bodies (JSON and the binary extension) and gRPC messages, where KServe's own decoding
  turns bad input into 500s, and writing REST responses.
- `fast_path`: the ASGI app that answers POST /v2/models/{name}/infer ahead of KServe's FastAPI stack.
"""
