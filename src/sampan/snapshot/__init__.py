"""Layer snapshots: safe unpacking of layer tars into directories that overlayfs stacks, and whiteouts."""
