"""Compact tokenizer: open_clip's BPE tokenizer remapped to a small vocabulary.

A tiny CLIP trained on a closed caption corpus (the toy world) needs only a few hundred
of the 49,408 BPE ids; keeping the full embedding table would dominate its size. The
checkpoint therefore carries ``vocab``: a sorted 1-D LongTensor of the BPE ids it kept,
and the text tower's ``vocab_size`` is ``len(vocab)``. Compact id ``i`` means BPE id
``vocab[i]``.

The remap keeps open_clip's conventions so that an unmodified ``open_clip.model.CLIP``
works: ``vocab[0]`` must be the pad id 0 (so padding stays 0) and ``vocab[-1]`` must be
the end-of-text id 49407 (so it stays the *largest* id and open_clip's ``argmax`` text
pooling still lands on it). The start-of-text id 49406 must be kept too.

Unknown tokens: a word (one match of the tokenizer's pattern) whose BPE pieces are not
all in ``vocab`` is dropped as a whole. With ``unknown='warn'`` (default) a warning names
the word once per tokenizer; ``unknown='error'`` raises instead. E.g. CLIP-ES's template
"a clean origami {}." becomes "a {}." for a vocabulary without "clean" and "origami".
"""
import warnings
from typing import Iterable, List, Optional, Set, Union

import torch

PAD_ID = 0
SOT_ID = 49406
EOT_ID = 49407


def _base_tokenizer():
    """open_clip's standard BPE tokenizer (ships with the package; works offline)."""
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


class CompactTokenizer:
    """open_clip BPE tokenizer whose output ids index a kept-id table ``vocab``.

    Args:
        vocab: sorted 1-D LongTensor (or sequence) of kept BPE ids; must start with the
            pad id 0, contain the start-of-text id 49406 and end with the end-of-text id
            49407.
        context_length: default number of tokens per text (SOT + words + EOT + padding).
        unknown: ``'warn'`` (drop unknown words, warn once per word) or ``'error'``.
    """

    def __init__(self, vocab: Union[torch.Tensor, Iterable[int]], context_length: int = 77,
                 unknown: str = 'warn') -> None:
        vocab = torch.as_tensor(list(vocab) if not torch.is_tensor(vocab) else vocab,
                                dtype=torch.long).flatten()
        if unknown not in ('warn', 'error'):
            raise ValueError(f"CompactTokenizer: unknown must be 'warn' or 'error', "
                             f'got {unknown!r}')
        if vocab.numel() < 3 or not bool((vocab[1:] > vocab[:-1]).all()):
            raise ValueError('CompactTokenizer: vocab must be a strictly increasing list '
                             f'of at least 3 BPE ids, got {vocab.tolist()[:10]}...')
        if int(vocab[0]) != PAD_ID or int(vocab[-1]) != EOT_ID or SOT_ID not in vocab:
            raise ValueError(f'CompactTokenizer: vocab must start with the pad id {PAD_ID}, '
                             f'contain the start-of-text id {SOT_ID} and end with the '
                             f'end-of-text id {EOT_ID} (argmax text pooling relies on it); '
                             f'got first={int(vocab[0])}, last={int(vocab[-1])}')
        self.vocab = vocab
        self.context_length = context_length
        self.unknown = unknown
        self._bpe = _base_tokenizer()
        self._compact = {int(b): i for i, b in enumerate(vocab.tolist())}
        self._warned: Set[str] = set()
        self.sot_token_id = self._compact[SOT_ID]
        self.eot_token_id = self._compact[EOT_ID]

    @property
    def vocab_size(self) -> int:
        """Number of compact ids (the text tower's ``vocab_size``)."""
        return int(self.vocab.numel())

    def encode(self, text: str) -> List[int]:
        """Compact ids of ``text`` (no SOT/EOT); unknown words dropped (see module doc)."""
        ids: List[int] = []
        for word in self._bpe.pat.findall(self._bpe.clean_fn(text)):
            pieces = self._bpe.encode(word)
            if all(p in self._compact for p in pieces):
                ids.extend(self._compact[p] for p in pieces)
            elif self.unknown == 'error':
                raise KeyError(f'CompactTokenizer: word {word!r} of text {text!r} is not '
                               'in the vocabulary')
            elif word not in self._warned:
                self._warned.add(word)
                warnings.warn(f'CompactTokenizer: word {word!r} (in {text!r}) is not in '
                              'the vocabulary of this CLIP; it is dropped', stacklevel=3)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of compact ids, skipping pad/SOT/EOT (inverse of :meth:`encode`)."""
        special = {PAD_ID, SOT_ID, EOT_ID}
        bpe = [int(self.vocab[int(i)]) for i in ids]
        return self._bpe.decode([b for b in bpe if b not in special]).strip()

    def __call__(self, texts: Union[str, List[str]],
                 context_length: Optional[int] = None) -> torch.Tensor:
        """Tokenize like ``open_clip.tokenize`` -> LongTensor (N, context_length) of compact ids.

        Too-long texts are truncated with EOT kept as the last token (open_clip's rule).
        """
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.sot_token_id] + self.encode(text) + [self.eot_token_id]
            if len(tokens) > length:
                tokens = tokens[:length]
                tokens[-1] = self.eot_token_id
            out[row, :len(tokens)] = torch.tensor(tokens)
        return out


def build_vocab(texts: Iterable[str]) -> torch.Tensor:
    """Sorted LongTensor of the BPE ids used by ``texts`` plus pad, SOT and EOT.

    The result is a valid ``vocab`` for :class:`CompactTokenizer`.
    """
    bpe = _base_tokenizer()
    ids = {PAD_ID, SOT_ID, EOT_ID}
    for text in texts:
        ids.update(bpe.encode(text))
    return torch.tensor(sorted(ids), dtype=torch.long)
