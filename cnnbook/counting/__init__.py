"""The book's arithmetic of a CNN: output sizes and receptive fields (:mod:`.sizing`), parameter,
activation and multiply-accumulate counts (:mod:`.formulas`, :mod:`.layer_rules`,
:mod:`.accounting`), training memory (:mod:`.memory`) and measured inference speed
(:mod:`.speed`). Chapters "Sizing a CNN" and "Parameters, memory and compute"."""
