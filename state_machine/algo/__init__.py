"""Order tools: good-til-time orders, grouped take-profit / stop-loss, TWAP orders."""
