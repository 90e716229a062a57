"""The API's routes, one router per concern; :func:`service.api.create_app` includes them."""
