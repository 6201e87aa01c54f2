"""mitmweb: the content views that show a turn assembled (contentviews.py for OpenAI and Qwen,
anthropic_views.py for the Messages API; flowrecord.py reads the gateway's record on the flow) and the
one-line flow summary and flow cap (flowview.py, observers).
"""
