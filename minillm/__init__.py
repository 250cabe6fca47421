"""minillm: build a large language model from scratch, one readable module per lesson.

Lesson map (lesson NN <-> notebook NN <-> module <-> tests) is in README.md.
"""

from minillm.utils import MiniLLMError, set_seed

__version__ = "0.1.0"
__all__ = ["MiniLLMError", "set_seed", "__version__"]
