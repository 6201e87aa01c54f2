"""mitmweb: the content views that show a turn assembled (contentviews.py) and the one-line flow summary
and flow cap (flowview.py, observers).
"""
