"""What the gateway knows about Qwen's models: the catalogue (catalogue.toml, read by catalogue.py), which model
answers a client's name (models/model_map.py), and the names nearest to one nobody serves (suggestions.py)."""
