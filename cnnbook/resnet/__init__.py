"""The ResNet chapter's studies: the unrolled view of a residual network (:mod:`.unrolled`),
lesion studies that delete and reorder blocks (:mod:`.lesion`), and the long experiments whose
results the book commits (:mod:`.experiments`, and :mod:`.converged` for the networks trained
until their training error plateaus)."""
