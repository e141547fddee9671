"""tinyir: the companion package of a from-scratch course on text embeddings and rerankers.

The modules follow the course, one concept each, in the order data flows:
text -> tokenizer -> encoder -> pooling -> (losses | search | rerank) -> metrics.
"""

__version__ = "0.1.0"
