"""Figures derived from records when they are read: efficiency, roofline, trade-offs, comparisons."""
