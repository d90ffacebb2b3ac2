"""Offline and whole-project commands (predict, label-project, eval), registered on `llm-backend`."""

from __future__ import annotations

import click

commands: list[click.Command] = []
