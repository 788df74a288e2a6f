"""Export formats, in one place (no heavy imports: the CLI and the window read this list at start-up).

``MODEL``: format -> file suffix of the exported network; the others export embeddings.
"""
MODEL = {"safetensors": ".safetensors", "pt2": ".pt2", "torchscript": ".ts", "onnx": ".onnx", "onnx_uint8": ".uint8.onnx"}
EMBEDDINGS = ("npz", "projector")
FORMATS = (*MODEL, *EMBEDDINGS)
