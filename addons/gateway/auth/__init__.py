"""Credentials for the Qwen gateway: Qwen Code OAuth files and API keys, behind one interface."""
