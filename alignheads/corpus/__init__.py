"""Word-aligned parallel sentences: the corpus model, file formats, validation, silver alignments."""
