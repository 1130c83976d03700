"""Provider adapters: pure wire mapping, one module per wire format."""
