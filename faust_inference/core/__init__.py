"""The inference engine, independent of Faust and of any HTTP client."""
