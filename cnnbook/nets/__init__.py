"""The networks: the building blocks of the known ConvNets (:mod:`.blocks`), the CIFAR and classic
networks the book trains and counts (:mod:`.models`, :mod:`.normalization`), and the survey of
known architectures with their published figures (:mod:`.survey`, :mod:`.published`)."""
