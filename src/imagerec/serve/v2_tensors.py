"""Open Inference Protocol v2 bodies (KServe's `inference_rest.md`, as Triton, Seldon MLServer and OpenVINO Model
Server speak it) → a pixel batch, and probabilities → an answer: JSON tensors and Triton's binary tensor data
extension (`Inference-Header-Content-Length`: a JSON header, then each binary tensor's bytes in order). For a
worker thread; no web framework here.

Hand-written because no maintained package parses OIP bodies on the server side without bringing its own
server (kserve's and MLServer's decoders live inside their model servers; tritonclient only encodes)."""

import base64
import binascii
import dataclasses
import struct

import numpy as np
import orjson

from imagerec.serve import inputs
from imagerec.serve.limits import RequestError, ServeLimits

PIXEL_INPUTS = {"image": "FP32", "image_uint8": "UINT8"}  # N x H x W x 3 pixels, 0-255, at the model's size
FILE_INPUT = "image_bytes"  # BYTES [N]: image files of any format and size, decoded and resized as uploads are
OUTPUT = "probabilities"  # FP32 [N, classes]
HEADER_LENGTH = "inference-header-content-length"
_DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """What an infer body asks: its `id` (echoed), the input (a name, numbers or files), the output's form."""

    id: str | None
    input_name: str
    pixels: np.ndarray | None  # float32 (N, H, W, 3) for the pixel inputs
    files: list | None  # [(name, bytes)] for image_bytes
    binary_output: bool


def parse_infer_request(body: bytes, header_length: str | None, input_shape, limits: ServeLimits) -> InferRequest:
    """An infer body (JSON, or Triton's JSON header + binary tensors) → InferRequest; RequestError 400."""
    header, binary = _split(body, header_length)
    document = inputs.parse_json_body(header)
    if not isinstance(document, dict):
        raise RequestError(400, 'the infer request must be a JSON object with "inputs"')
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, '"id" must be a string')
    tensor = _one_input(document.get("inputs"))
    name, shape = tensor["name"], _shape(tensor, input_shape, limits)
    data = _tensor_bytes(tensor, binary)
    if name == FILE_INPUT:
        files = _files(data if isinstance(data, bytes) else _json_files(data), shape[0])
        return InferRequest(request_id, name, None, files, _binary_output(document))
    pixels = _pixels(data, tensor["datatype"], shape)
    return InferRequest(request_id, name, pixels, None, _binary_output(document))


def _split(body: bytes, header_length: str | None) -> tuple:
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise RequestError(400, f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the "
                                f"body's {len(body)} bytes")
    return body[:int(header_length)], body[int(header_length):]


def _one_input(tensors) -> dict:
    if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
        raise RequestError(400, f'"inputs" must be a list of one tensor: {_input_names()}')
    tensor = tensors[0]
    name, datatype = tensor.get("name"), tensor.get("datatype")
    expected = PIXEL_INPUTS.get(name, "BYTES" if name == FILE_INPUT else None)
    if expected is None:
        raise RequestError(400, f"unknown input {str(name)[:64]!r}; this model takes one of {_input_names()}")
    if datatype != expected:
        raise RequestError(400, f"input {name!r} is {expected}, got datatype {str(datatype)[:16]!r}")
    return tensor


def _input_names() -> str:
    return ", ".join([*(f"{name} ({datatype})" for name, datatype in PIXEL_INPUTS.items()), f"{FILE_INPUT} (BYTES)"])


def _shape(tensor: dict, input_shape, limits: ServeLimits) -> list:
    shape, name = tensor.get("shape"), tensor["name"]
    expected = [-1] if name == FILE_INPUT else [-1, *input_shape]
    if (not isinstance(shape, list) or len(shape) != len(expected)
            or not all(isinstance(size, int) and not isinstance(size, bool) for size in shape)
            or any(want != -1 and size != want for size, want in zip(shape, expected))):
        raise RequestError(400, f"input {name!r} has shape {str(shape)[:80]}; this model takes "
                                f"{['N', *expected[1:]]}")
    if not 1 <= shape[0] <= limits.max_instances:
        raise RequestError(400, f"input {name!r} has {shape[0]} images; from 1 to {limits.max_instances} are taken")
    return shape


def _tensor_bytes(tensor: dict, binary: bytes):
    """The tensor's binary data (bytes), or its JSON "data"; a size that disagrees with the body is 400."""
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(400, '"parameters" must be an object')
    size = parameters.get("binary_data_size")
    if size is None:
        if binary:
            raise RequestError(400, f"the body has {len(binary)} bytes after its JSON header, but no input says "
                                    "binary_data_size")
        if "data" not in tensor:
            raise RequestError(400, f"input {tensor['name']!r} has neither \"data\" nor binary_data_size")
        return tensor["data"]
    if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
        raise RequestError(400, f"input {tensor['name']!r} says binary_data_size {str(size)[:20]}, but the body "
                                f"has {len(binary)} bytes after its JSON header")
    return binary


def _pixels(data, datatype: str, shape: list) -> np.ndarray:
    count, what = int(np.prod(shape)), f"input {'image' if datatype == 'FP32' else 'image_uint8'}"
    if isinstance(data, bytes):
        if len(data) != count * _DTYPES[datatype].itemsize:
            raise RequestError(400, f"{what}: {len(data)} bytes of binary data for shape {shape} of {datatype} "
                                    f"({count * _DTYPES[datatype].itemsize} bytes)")
        pixels = np.frombuffer(data, _DTYPES[datatype])
    else:
        pixels = _json_numbers(data, count, what)
        if datatype == "UINT8" and (pixels.dtype.kind == "f" and not np.array_equal(pixels, np.round(pixels))):
            raise RequestError(400, f"{what}: UINT8 data must be whole numbers")
    return inputs.checked_pixels(pixels.reshape(shape), what)


def _json_numbers(data, count: int, what: str) -> np.ndarray:
    try:
        numbers = np.asarray(data)
    except (ValueError, TypeError):
        raise RequestError(400, f"{what}: \"data\" is not a flat or rectangular list of numbers") from None
    if numbers.dtype.kind not in "iuf" or numbers.size != count:
        raise RequestError(400, f"{what}: \"data\" must hold {count} numbers for its shape, got "
                                f"{numbers.size} {'numbers' if numbers.dtype.kind in 'iuf' else 'values'}")
    return numbers.ravel()


def _files(data: bytes | list, count: int) -> list:
    """BYTES elements (Triton's serialization: each a 4-byte little-endian length, then its bytes) → files."""
    if isinstance(data, list):
        elements = data
    else:
        elements, offset = [], 0
        while offset < len(data):
            if offset + 4 > len(data):
                raise RequestError(400, "input 'image_bytes': binary data ends inside an element's length")
            (length,) = struct.unpack_from("<I", data, offset)
            if offset + 4 + length > len(data):
                raise RequestError(400, f"input 'image_bytes': element {len(elements)} says {length} bytes, "
                                        f"past the end of the binary data")
            elements.append(data[offset + 4:offset + 4 + length])
            offset += 4 + length
    if len(elements) != count:
        raise RequestError(400, f"input 'image_bytes': {len(elements)} elements for shape [{count}]")
    return [(f"image_bytes[{index}]", element) for index, element in enumerate(elements)]


def _json_files(data) -> list:
    """JSON BYTES elements: each an image file in base64 (as KServe's v2 examples send them)."""
    if not isinstance(data, list) or not all(isinstance(element, str) for element in data):
        raise RequestError(400, "input 'image_bytes': JSON \"data\" must be a list of base64 strings")
    try:
        return [base64.b64decode(element, validate=True) for element in data]
    except (binascii.Error, ValueError):
        raise RequestError(400, "input 'image_bytes': an element is not valid base64") from None


def _binary_output(document: dict) -> bool:
    """Whether the answer's probabilities go as binary (request `binary_data_output`, or the output's
    `binary_data`); an output other than `probabilities` is 400."""
    parameters, outputs = document.get("parameters") or {}, document.get("outputs")
    binary = bool(isinstance(parameters, dict) and parameters.get("binary_data_output", False) is True)
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(output, dict) for output in outputs):
        raise RequestError(400, '"outputs" must be a list of objects')
    for output in outputs:
        if output.get("name") != OUTPUT:
            raise RequestError(400, f"unknown output {str(output.get('name'))[:64]!r}; this model has {OUTPUT!r}")
        output_parameters = output.get("parameters") or {}
        if isinstance(output_parameters, dict) and "binary_data" in output_parameters:
            binary = output_parameters["binary_data"] is True
    return binary


def infer_response(model_name: str, request: InferRequest, probabilities: np.ndarray) -> tuple:
    """(body, headers) of the answer: JSON, or Triton's JSON header + the probabilities' float32 bytes."""
    output = {"name": OUTPUT, "datatype": "FP32", "shape": list(probabilities.shape)}
    document = {"model_name": model_name, "model_version": "1", "outputs": [output]}
    if request.id is not None:
        document["id"] = request.id
    if not request.binary_output:
        output["data"] = np.asarray(probabilities, np.float32).ravel()
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), {"content-type": "application/json"}
    data = np.asarray(probabilities, "<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps(document)
    return header + data, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
