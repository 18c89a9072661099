"""torch.hub entry points: ``torch.hub.load("googlenet-book/googlenet-book", "googlenet", weights=...)``."""

dependencies = ["torch", "torchvision"]

from googlenet.weights import GoogLeNet_Weights, googlenet  # noqa: E402, F401
