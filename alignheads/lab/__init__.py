"""Looking at heads: plots, the paper's figures, notebook helpers, the explorer, TransformerLens."""
