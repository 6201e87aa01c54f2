"""What a request cost: the built-in price list (pricing/price_list.py, from the model catalogue) and the table that prices
usage (pricing/prices.py)."""
