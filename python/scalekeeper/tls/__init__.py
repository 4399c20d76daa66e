"""TLS for the two API ports: one cipher policy, certificates reloaded from files."""
