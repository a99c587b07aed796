"""The HTTP surface: routes, dependencies, middleware and the error handler."""
