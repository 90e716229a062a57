"""The OpenAPI descriptions of ``POST /upscale`` and ``POST /restore``: bodies, headers and every error answer."""

from __future__ import annotations

from service.core.images import OUTPUT_FORMATS

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "stable error code"},
        "detail": {"type": "string", "description": "the reason, for people"},
        "request_id": {"type": "string"},
    },
    "required": ["error", "detail", "request_id"],
}
ERROR_RESPONSES = {
    400: "empty body, corrupt or truncated image, bad `scale`, `format` or `model`, image smaller than the minimum, "
         "or `model=clean|real` naming a model the workers do not have at that scale (`no_model`)",
    401: "API keys are on and the request has no valid `Authorization: Bearer <key>`",
    413: "body over `max_upload_bytes`, or image over `max_input_side` / `max_input_pixels` (read from the header)",
    415: "not a PNG, JPEG, WebP, GIF or BMP image, or an animated image",
    429: "the queue is full (by jobs or by their model time); `Retry-After` says when to try again",
    500: "the job failed on the workers (dead-lettered after repeated failures)",
    503: "the queue (Redis) is unreachable",
    504: "the job's deadline passed before a worker finished it",
}
UPSCALE_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "the image: a multipart form field `image`, or the raw body (any image content type)",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}, "required": ["image"]}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "the upscaled image, `scale`× the input's width and height",
            "content": {mime: {"schema": {"type": "string", "format": "binary"}} for mime in OUTPUT_FORMATS.values()},
            "headers": {
                "X-Request-ID": {"schema": {"type": "string"}, "description": "the request's id (yours if you sent one)"},
                "Server-Timing": {"schema": {"type": "string"}, "description": "queue, inference and total time (ms)"},
                "X-Queue-Wait-Ms": {"schema": {"type": "number"}, "description": "time the job waited for a worker"},
                "X-Inference-Ms": {"schema": {"type": "number"}, "description": "model time of the job's batch"},
                "X-Batch-Size": {"schema": {"type": "integer"}, "description": "images in the job's batch"},
                "X-Execution-Provider": {"schema": {"type": "string"}, "description": "ONNX Runtime provider used"},
                "X-Model": {"schema": {"type": "string"},
                            "description": "the manifest name of the model that ran (what `model=auto` chose)"},
            },
        },
        **{
            str(status): {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status, text in ERROR_RESPONSES.items()
        },
    },
}

RESTORE_ERRORS = {
    **ERROR_RESPONSES,
    400: "empty body, corrupt or truncated image, bad `scale`, `format`, `model` or `report`, image smaller than the "
         "minimum, or `model=clean|real` naming a model the workers do not have at that scale (`no_model`)",
    413: "body over `max_upload_bytes`, or photo over `restore_max_input_side` / `restore_max_input_pixels` / "
         "`restore_max_output_side` (read from the header)",
    429: "the queue has no room for all of the photo's faces (by jobs or by their model time); `Retry-After` says when",
    504: "a face's job was not finished before the deadline",
}
RESTORE_OPENAPI = {
    "requestBody": UPSCALE_OPENAPI["requestBody"],
    "responses": {
        "200": {
            "description": "the restored photo, `scale`× the input's width and height, or the faces found (`report=json`)",
            "content": {
                **UPSCALE_OPENAPI["responses"]["200"]["content"],
                "application/json": {"schema": {"type": "object", "description": "`report=json`: the faces found"}},
            },
            "headers": {
                "X-Request-ID": UPSCALE_OPENAPI["responses"]["200"]["headers"]["X-Request-ID"],
                "X-Faces": {"schema": {"type": "integer"}, "description": "faces restored"},
                "X-Faces-Detected": {"schema": {"type": "integer"}, "description": "faces found"},
                "X-Face-Boxes": {
                    "schema": {"type": "string"},
                    "description": 'JSON [{"box": [x1, y1, x2, y2], "score": s, "status": ...}] in input pixels',
                },
                "X-Batch-Sizes": {"schema": {"type": "string"}, "description": "the batch size of each restored face's job"},
                "Server-Timing": {"schema": {"type": "string"}, "description": "detect, queue, inference and total time (ms)"},
                "X-Execution-Provider": UPSCALE_OPENAPI["responses"]["200"]["headers"]["X-Execution-Provider"],
                "X-Model": {"schema": {"type": "string"},
                            "description": "the manifest name of the model that ran on every face (absent: no face)"},
            },
        },
        **{
            str(status): {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status, text in RESTORE_ERRORS.items()
        },
    },
}
