"""Namespace of the repository's MMSeg-style projects (``projects.vpl``)."""
