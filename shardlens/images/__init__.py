"""Images: finding them (:mod:`.listing`) and reading and decoding them safely (:mod:`.decoding`)."""
