"""Thin wrappers over Linux system calls that the standard library does not expose.

Everything that needs ``ctypes`` lives here, so the rest of sampan stays plain Python and a reviewer has one
place to audit raw syscall use.
"""
