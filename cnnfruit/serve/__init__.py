"""`cnnfruit serve`: a web page and an HTTP API for a trained model (the [serve] extra).

model.py is the one module here that imports cnnfruit's internals; batching.py holds the thread
that makes every call into the classifier; limits.py reads uploads within their limits; app.py
has the routes; server.py runs them on uvicorn; page/ is the page, served as it is.
"""
