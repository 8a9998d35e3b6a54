"""The old name of :mod:`cnnbook.survey` (the survey of known ConvNets: the networks the chapter
"Known ConvNet architectures" builds, their computed costs beside the published figures, their
speed). It holds no architectures; it re-exports the survey so that ``from cnnbook import
architectures`` keeps working. New code imports :mod:`cnnbook.survey`.
"""

from cnnbook.survey import *  # noqa: F403  (the old import path keeps working)
from cnnbook.survey import __all__  # noqa: F401
