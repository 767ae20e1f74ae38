"""Placeholder until its issue lands: the owning module replaces this file."""
from . import CommandError


def add_arguments(parser):
    pass


def run(args):
    raise CommandError("not implemented yet")
