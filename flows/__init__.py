"""Prefect flows: they wire the tasks in ``tasks/`` and make the decisions (gate, review).

Modules here do not use ``from __future__ import annotations``: Prefect builds each flow's parameter
schema (the form in the UI, and validation of deployment runs) from the annotations at run time.
"""
