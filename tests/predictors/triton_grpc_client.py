"""tritonclient.grpc, run in a process of its own: its generated protobuf module defines the same `inference.*`
symbols as KServe's grpc_predict_v2_pb2, and protobuf refuses to load both into one process (the tests import
KServe). Reads one JSON request on stdin, writes one JSON answer on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def call(url: str, model: str, tensors: list[tuple[str, np.ndarray, str]] | None = None) -> dict:
    """Infer (or, without tensors, read the model metadata) with tritonclient.grpc against `url`."""
    request = {
        "url": url,
        "model": model,
        "inputs": [
            {
                "name": name,
                "datatype": datatype,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
            for name, array, datatype in tensors or []
        ],
    }
    done = subprocess.run(
        [sys.executable, __file__], input=json.dumps(request), capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def main() -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    request = json.load(sys.stdin)
    client = grpcclient.InferenceServerClient(request["url"])
    if not request["inputs"]:
        metadata = client.get_model_metadata(request["model"])
        inputs = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs]
        json.dump({"inputs": inputs}, sys.stdout)
        return
    inputs = []
    for tensor in request["inputs"]:
        array = np.asarray(tensor["data"], dtype=tensor["dtype"]).reshape(tensor["shape"])
        infer_input = grpcclient.InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    try:
        result = client.infer(request["model"], inputs)
    except InferenceServerException as error:
        json.dump({"status": error.status(), "message": error.message()}, sys.stdout)
        return
    response = result.get_response()
    outputs = {output.name: as_json(result.as_numpy(output.name)) for output in response.outputs}
    json.dump({"id": response.id, "model_version": response.model_version, "outputs": outputs}, sys.stdout)


def as_json(array: np.ndarray) -> list:
    """Numbers as nested lists; BYTES (text) as a flat list of str."""
    if array.dtype == object:
        return [value.decode() if isinstance(value, bytes) else value for value in array.ravel().tolist()]
    return array.tolist()


if __name__ == "__main__":
    main()
