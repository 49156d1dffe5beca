"""Images: references, digests, media types, manifests and configs (pure data, no storage)."""
