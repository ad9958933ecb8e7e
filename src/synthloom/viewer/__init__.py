"""Local dataset viewer with expert review: `serve_viewer`, `create_viewer_app`, `export_reviewed`."""

from synthloom.viewer.app import create_viewer_app, serve_viewer
from synthloom.viewer.export import export_reviewed

__all__ = ["create_viewer_app", "export_reviewed", "serve_viewer"]
