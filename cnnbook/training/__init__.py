"""Training and evaluating the CIFAR networks: :func:`.train.fit_cifar` and its recipes, the fused
batch norm that speeds it up, top-1 accuracy, evaluation and the plots of a run."""
