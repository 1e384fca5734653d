"""The static report site: ``build_site(results_dir, site_dir)`` and the ``dlmark report`` command."""
from __future__ import annotations

from .site import SiteSummary, build_site

__all__ = ["SiteSummary", "build_site"]
