"""Quality of split inference on real text: corpora, strided windows, perplexity, KL, top-1 agreement."""

from edgesplit.quality.corpus import CORPORA, Corpus, load_corpus, tokenize_corpus
from edgesplit.quality.metrics import QualityResult, evaluate_split
from edgesplit.quality.windows import Window, make_windows

__all__ = ["CORPORA", "Corpus", "QualityResult", "Window", "evaluate_split", "load_corpus", "make_windows",
           "tokenize_corpus"]
