"""Who may call: projects, API keys (stored hashed), the bootstrap key, and the principal an
authenticated key binds to each RPC."""
