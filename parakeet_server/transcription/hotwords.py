"""Hotwords (phrase boosting): what a request may ask for, and NeMo's per-utterance boosting trees.

Why per utterance: NeMo's label-looping greedy decoder for TDT/RNN-T holds a "biasing multi-model"
(nemo.collections.asr.parts.context_biasing.biasing_multi_model) into which any number of boosting
trees are added at run time; each utterance of a batch names its own tree (or none) by id. So one
forward pass and one decoding loop serve requests with different hotwords, and the model is never
reloaded. Live streams use the same trees in the streaming pipeline's decoder, one per distinct
set held while a stream boosts it (see transcription.streaming). The boosting tree is NeMo's
Aho-Corasick context graph over the phrase's subword tokens (the same one its streaming pipeline
uses), weighted per phrase by the request's boost.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from parakeet.hotwords import DEFAULT_BOOST, HotwordError, normalised_hotwords
from parakeet.v1 import audio_pb2
from parakeet_server.core.errors import InvalidRequest

log = logging.getLogger(__name__)

DEPTH_SCALING = 2.0  # NeMo's value for RNN-T/TDT: later tokens of a phrase weigh more than its first
_TREE_CACHE_SIZE = 64


@dataclass(frozen=True)
class Hotword:
    """One phrase to favour and its per-token bonus (log-probability units)."""

    phrase: str
    boost: float = DEFAULT_BOOST


HotwordSet = tuple[Hotword, ...]  # hashable: one boosting tree per distinct set
NO_HOTWORDS: HotwordSet = ()


def check_hotwords(hotwords: Sequence[audio_pb2.Hotword], field: str = "hotwords") -> HotwordSet:
    """The request's hotwords, validated and normalised by audio.proto's rules (parakeet.hotwords)."""
    try:
        return tuple(Hotword(phrase, boost) for phrase, boost in normalised_hotwords(hotwords, field))
    except HotwordError as error:
        raise InvalidRequest(str(error), reason="INVALID_FIELD") from None


def boosted_decoding(model: Any, decoding: Any, what: str) -> tuple[Any, Any] | None:
    """The model's decoding with NeMo's per-stream biasing on (its settings otherwise), and that
    decoding's biasing multi-model (None when the decoder has none). The model holds the boosted
    decoding afterwards: the caller sets its plain one back. None, logged as `what` off, when the
    strategy cannot boost (NeMo boosts only in the label-looping greedy batch decoder of RNN-T/TDT)."""
    from omegaconf import open_dict

    if decoding.get("strategy") != "greedy_batch" or not decoding.greedy.get("loop_labels", True):
        log.info("%s off: decoding strategy %s has no per-stream boosting", what, decoding.get("strategy"))
        return None
    boosted = copy.deepcopy(decoding)
    with open_dict(boosted):
        boosted.greedy.enable_per_stream_biasing = True
    model.change_decoding_strategy(boosted, verbose=False)
    computer = getattr(model.decoding.decoding, "decoding_computer", None)
    return model.decoding, getattr(computer, "biasing_multi_model", None)


def _boosting_request_type() -> Any:
    """NeMo's Hypothesis that carries a biasing request and, when merged, becomes its continuation whole.

    NeMo merges a given partial hypothesis with the decoded continuation (`merge_`), which drops the
    token durations TDT timestamps need. Ours starts empty, so taking the continuation as it is gives
    exactly the hypothesis an unboosted decode would have produced, shaped the same.
    """
    from nemo.collections.asr.parts.utils.rnnt_utils import Hypothesis

    class BoostingRequest(Hypothesis):  # type: ignore[misc]
        def merge_(self, other: Any) -> Any:
            request = getattr(self, "biasing_cfg")  # noqa: B009 (NeMo's untyped dataclass field)
            for item in dataclasses.fields(other):
                setattr(self, item.name, getattr(other, item.name))
            setattr(self, "biasing_cfg", request)  # noqa: B010
            return self

    return BoostingRequest


class PhraseBooster:
    """Boosting trees for hotword sets (cached), registered in a decoder's multi-model for one pass."""

    def __init__(self, tokenizer: Any, multi_model: Any, use_triton: bool) -> None:
        self._tokenizer = tokenizer
        self._multi_model = multi_model
        self._use_triton = use_triton
        self._trees: OrderedDict[HotwordSet, Any] = OrderedDict()
        self._request_type = _boosting_request_type()

    def tree(self, hotwords: HotwordSet) -> Any:
        """The boosting tree for `hotwords` (built once, then served from a small LRU cache)."""
        cached = self._trees.get(hotwords)
        if cached is not None:
            self._trees.move_to_end(hotwords)
            return cached
        from nemo.collections.asr.parts.context_biasing.boosting_graph_batched import GPUBoostingTreeModel
        from nemo.collections.asr.parts.context_biasing.context_graph_universal import ContextGraph

        graph = ContextGraph(context_score=DEFAULT_BOOST, depth_scaling=DEPTH_SCALING)
        graph.build(
            token_ids=[list(self._tokenizer.text_to_ids(h.phrase)) for h in hotwords],
            phrases=[h.phrase for h in hotwords],
            scores=[h.boost for h in hotwords],
        )
        tree = GPUBoostingTreeModel.from_context_graph(
            context_graph=graph,
            vocab_size=self._tokenizer.vocab_size,
            unk_score=0.0,
            final_eos_score=1.0,  # NeMo's default; greedy transducer decoding never reads it
            use_triton=self._use_triton,
            uniform_weights=False,
        )
        self._trees[hotwords] = tree
        while len(self._trees) > _TREE_CACHE_SIZE:
            self._trees.popitem(last=False)
        return tree

    def register(self, sets: Iterable[HotwordSet]) -> dict[HotwordSet, int]:
        """Add one tree per distinct non-empty set to the multi-model; its id per set."""
        ids: dict[HotwordSet, int] = {}
        try:
            for hotwords in sets:
                if hotwords and hotwords not in ids:
                    ids[hotwords] = int(self._multi_model.add_model(self.tree(hotwords), alpha=1.0))
        except BaseException:
            self.unregister(ids.values())
            raise
        return ids

    def unregister(self, ids: Iterable[int]) -> None:
        for model_id in ids:
            self._multi_model.remove_model(model_id)

    def requests(self, sets: Sequence[HotwordSet], ids: dict[HotwordSet, int]) -> list[Any]:
        """NeMo partial hypotheses naming each utterance's tree; None for utterances without hotwords."""
        return [self.request(ids[hotwords]) if hotwords else None for hotwords in sets]

    def request(self, model_id: int) -> Any:
        """A fresh partial hypothesis naming the registered tree `model_id` (decoding fills it in)."""
        return self._request_type.empty_with_biasing_cfg(biasing_config(model_id))


def biasing_config(model_id: int) -> Any:
    """NeMo's per-request biasing option for a tree this server registered (and removes) itself."""
    from nemo.collections.asr.parts.context_biasing.biasing_multi_model import BiasingRequestItemConfig

    return BiasingRequestItemConfig(multi_model_id=model_id, auto_manage_multi_model=False)
