"""The API's routes, one router per concern; :func:`service.http.app.create_app` includes them."""
