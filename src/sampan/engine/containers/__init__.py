"""Containers: the engine's verbs over container records, one module per verb family.

``create`` turns an image and ``docker run`` options into a record, a writable layer and an OCI bundle;
``lifecycle`` starts (through a monitor process), stops, kills, restarts, pauses and waits; ``remove`` deletes;
``query`` lists and inspects; ``logs`` and ``execute`` read logs and run processes; ``copy`` moves files in and
out safely. The record itself and its on-disk places are in ``model``.
"""
