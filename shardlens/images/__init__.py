"""Images: finding them (:mod:`.listing`) and reading and decoding them safely (:mod:`.decoding`)."""

# The per-shard stage scripts (scripts/{ingest,gate,ocr,detect}.py) import Limits from here: a
# changed script re-runs every job of its rule on an existing cache (Snakemake re-runs a job whose
# output is older than its script), so those scripts stay as they are and this name stays.
from .decoding import Limits  # noqa: F401
