"""shardlens: image shards -> detection, text gate, OCR, embeddings -> SQLite + annotation CSV."""

__version__ = "0.1.0"
