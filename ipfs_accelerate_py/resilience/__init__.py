"""Sans-IO policies: each is given outcomes and a time, and answers a question."""
