"""The API's OpenAPI 3.1 document, written out by hand: it is short, and it states what app.py does."""

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
IMAGES_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {
            "type": "string", "format": "binary", "description": "an image file; every part must be a file"}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
NAME = {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
        "description": "The image's name in answers and errors, for a raw image body."}


def _refusals(*statuses):
    reasons = {400: "A malformed request, an unknown parameter, or a form field that is not a file.",
               408: "The upload did not arrive within the server's --upload-timeout.",
               413: "An image larger than --max-upload-mb, or more than --max-images images.",
               415: "A Content-Type other than multipart/form-data, image/* or application/octet-stream.",
               422: "No image in the request could be read."}
    return {str(s): {"description": reasons[s], "content": {"application/json": {"schema": ERROR}}} for s in statuses}


def openapi(class_names):
    probabilities = {"type": "object", "properties": {name: {"type": "number"} for name in class_names}}
    image = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "description": "the file name the client gave (printable, shortened)"},
        "class": {"type": "string", "enum": list(class_names), "description": "the most likely class"},
        "unsure": {"type": "boolean", "description": "the class's probability is below min_confidence"},
        "probabilities": probabilities,
        "view": {"type": "string", "description": "with view=1: the network's input view as a PNG data URL"},
        "error": {"type": "string", "description": "instead of the others: why this image could not be read"},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "cnnfruit serve", "version": "1",
                 "description": "Predictions and explanations of one trained cnnfruit model. See docs/serve.md."},
        "paths": {
            "/api/predict": {"post": {
                "summary": "Classify one or more images",
                "parameters": [
                    {"name": "min_confidence", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1},
                     "description": "Below this probability an answer is unsure (default: the server's --min-confidence)."},
                    {"name": "tta", "in": "query", "schema": {"type": "string", "enum": ["none", "flip", "rotate"]},
                     "description": "Test-time augmentation, as cnnfruit predict --tta."},
                    {"name": "view", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]},
                     "description": "1: also return each image as the network sees it."},
                    NAME,
                ],
                "requestBody": IMAGES_BODY,
                "responses": {
                    "200": {"description": "One entry per image, in order; unreadable ones carry an error.",
                            "content": {"application/json": {"schema": {"type": "object", "properties": {
                                "images": {"type": "array", "items": image},
                                "min_confidence": {"type": "number"}, "tta": {"type": "string"}}}}}},
                    **_refusals(400, 408, 413, 415, 422),
                },
            }},
            "/api/explain": {"post": {
                "summary": "The saliency or occlusion map of one image, drawn over it",
                "parameters": [
                    {"name": "map", "in": "query", "schema": {"type": "string", "enum": ["occlusion", "saliency"]}},
                    {"name": "class", "in": "query", "schema": {"type": "string", "enum": list(class_names)},
                     "description": "The class to explain (default: the predicted one)."},
                    NAME,
                ],
                "requestBody": IMAGES_BODY,
                "responses": {
                    "200": {"description": "A PNG; headers X-Cnnfruit-Class-Index and X-Cnnfruit-Probability say "
                                           "which class it explains and its probability.",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                    **_refusals(400, 408, 413, 415, 422),
                },
            }},
            "/api/model": {"get": {"summary": "The model: classes, layers, training settings, limits",
                                   "responses": {"200": {"description": "JSON"}}}},
            "/healthz": {"get": {"summary": "Up, and how the micro-batches went",
                                 "responses": {"200": {"description": "JSON"}}}},
        },
    }
