"""The OCI runtime: sampan-runc, usable as a library and as a runc-compatible command."""
