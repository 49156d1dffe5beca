"""The engine: every user-visible verb as a typed function over the store and subsystems.

Front ends (CLI, API service) parse input, call one engine function and format its plain-data result.
"""
