"""The Docker Engine API service (``sampan system service``): aiohttp handlers over the engine library.

Imported only by that command: nothing else pays for aiohttp. ``server`` holds the application, the thread pool
that runs engine calls and the request/response helpers; one module per group of endpoints.
"""
