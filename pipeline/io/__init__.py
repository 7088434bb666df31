"""Readers and writers shared by every stage: build files, release files, reports."""
