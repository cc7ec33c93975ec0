"""The JSON API for the rest of the coaching product (``/api``) and its OpenAPI description."""
