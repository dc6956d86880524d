"""Building blocks every stage uses: errors, files, the artifact cache, languages, text, metrics."""
