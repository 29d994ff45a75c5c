"""The figures shown in the README and docs, each one command over the library."""
