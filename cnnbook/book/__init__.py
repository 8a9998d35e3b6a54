"""What the book's pages use to show results: computed values glued into the prose and tables
(:mod:`.pages`), drawings of a model's layer graph (:mod:`.diagrams`)."""
