"""API keys, scopes, per-key limits and the engine admission gate."""
