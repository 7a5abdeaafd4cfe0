"""``python -m shardlens.demo OUT_DIR``: write the demo image collection."""

from .generate import main

main()
