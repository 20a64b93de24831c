"""Optional capabilities a plugin may offer beyond its role's interface, as declared protocols.

The core and other plugins check a capability with ``isinstance(obj, Protocol)`` (the protocols
are ``runtime_checkable``), never by the class of the implementation or by probing attributes, so
any plugin, built in or third party, can offer one by implementing its members:

:class:`PromptEncoder`
    A :class:`~hybridrec.interfaces.Generator` that renders the exact prompt it ranks from. A
    ranking is then a deterministic function of ``(adapter, prompt)``, which table generation
    uses to re-rank only the contexts whose prompt changed (delta regeneration) and to rank
    identical prompts once (de-duplication). A generator without it is always re-ranked in full.
:class:`TrainableGenerator`
    A generator whose model a fine-tuner can train: it hands out a fresh trainable copy of the
    model for an adapter, builds teacher-forcing batches and their loss, scores with a given
    model, and saves a trained model in its own adapter format. The ``lora`` fine-tuner works
    through this protocol only.
:class:`AddedTokens`
    A trainable generator that added tokens to a pretrained model's vocabulary (the ``hf``
    generator's cluster tokens): a fine-tuner trains those embedding rows along with its adapter
    (the ``lora`` fine-tuner through peft's ``trainable_token_indices``) instead of the whole
    embedding matrix.

``runtime_checkable`` checks that the members exist, not their signatures; the docstrings are
the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybridrec.types import ClusterCatalog, EvidenceBatch, Rankings


@runtime_checkable
class EncodedPrompts(Protocol):
    """Prompt ids ``(n, L)`` (left-padded) and each row's true length ``(n,)``."""

    ids: np.ndarray
    lengths: np.ndarray


@runtime_checkable
class PromptEncoder(Protocol):
    """A generator that renders prompts (see the module docstring).

    Contract of :meth:`encode`: deterministic; two rows with equal ``ids``, ``lengths`` and
    (when the prompts carry any) numeric ``features`` are ranked identically by
    :meth:`~hybridrec.interfaces.Generator.rank` under the same adapter;
    ``as_of=None`` measures evidence recency against the end of the evidence's snapshot window
    (what table generation uses).
    """

    def encode(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        """The rendered prompt of each context (with its evidence row, if any)."""
        ...


def prompt_matrix(
    encoder: PromptEncoder, contexts: np.ndarray, evidence: EvidenceBatch | None
) -> np.ndarray:
    """One row per context: its prompt ids, the prompt length, then the bit patterns of its
    numeric ``features`` if the prompts carry any (``int64``, C-contiguous), so two rows are
    equal exactly when the prompts are — numbers the model reads included."""
    enc = encoder.encode(contexts, evidence, None)
    ids = np.asarray(enc.ids, dtype=np.int64)
    ids = ids.reshape(ids.shape[0], -1)  # prompts of several token channels (rerank form)
    lengths = np.asarray(enc.lengths, dtype=np.int64).reshape(-1, 1)
    parts = [ids, lengths]
    features = getattr(enc, "features", None)
    if features is not None:
        # The exact bits of each number: a prompt whose tokens match but whose numbers moved is
        # another prompt (the model reads the numbers).
        values = np.ascontiguousarray(features).reshape(ids.shape[0], -1)
        bits = {4: np.int32, 8: np.int64, 2: np.int16}.get(values.dtype.itemsize)
        if bits is None:
            raise TypeError(f"numeric prompt features of dtype {values.dtype} are not supported")
        parts.append(values.view(bits).astype(np.int64))
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


@runtime_checkable
class TrainableGenerator(Protocol):
    """A generator whose model a fine-tuner trains (see the module docstring).

    ``model`` arguments are what :meth:`model_from_adapter` returned (the fine-tuner's copy under
    training); ``None`` means the generator's active model.
    """

    catalog: ClusterCatalog
    options: Any
    #: whether the active model's base is trained (False: an untrained preset to train first)
    base_trained: bool
    #: identifier of the base model adapters are trained against
    base_model_id: str

    @property
    def model(self) -> Any:
        """The active model (exposes ``config`` with ``hidden_size`` / ``num_hidden_layers``)."""
        ...

    @property
    def evidence_items(self) -> int:
        """Evidence items rendered per prompt."""
        ...

    @property
    def template_version(self) -> str:
        """Version of the prompt template (adapters are tied to it)."""
        ...

    @property
    def codec_kind(self) -> str:
        """How clusters are tokenised (adapters are tied to it)."""
        ...

    def base_model_hash(self) -> str:
        """Content hash of the base model."""
        ...

    def model_from_adapter(self, path: Path | None, *, trainable: bool) -> tuple[Any, bool]:
        """A fresh model with the adapter at ``path`` applied (None: the base) and whether its
        base is trained; the active model is untouched."""
        ...

    def adapter_has_base(self, path: Path) -> bool:
        """Whether the adapter folder at ``path`` carries its own trained base model."""
        ...

    def training_batch(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None,
        labels: np.ndarray,
    ) -> dict[str, Any]:
        """Teacher-forcing inputs of prompts plus the labels' answers."""
        ...

    def training_loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """Per-example negative log-likelihood of the answers of a :meth:`training_batch`."""
        ...

    def rank(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, k: int = 5, *,
        progress: bool = False, as_of: np.ndarray | None = None, model: Any | None = None,
    ) -> Rankings:
        """:meth:`Generator.rank`, optionally with ``model`` and per-row evidence times."""
        ...

    def generate(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *,
        progress: bool = False, as_of: np.ndarray | None = None, model: Any | None = None,
    ) -> list[str]:
        """:meth:`Generator.generate`, optionally with ``model``."""
        ...

    def prompt_tokens(self, *, with_evidence: bool) -> float:
        """Mean prompt length in tokens."""
        ...

    def answer_tokens(self) -> float:
        """Mean answer length in tokens over the catalog."""
        ...

    def save_trained(
        self, model: Any, out_dir: Path, *, full: bool, previous_adapter: Path | None
    ) -> None:
        """Write ``model`` into ``out_dir`` in this generator's adapter format (``full``: the
        whole model was trained; otherwise an adapter over the base of ``previous_adapter`` or
        the preset), so that :meth:`load_adapter` of ``out_dir`` activates it."""
        ...

    def load_adapter(self, path: Path | None) -> None:
        """:meth:`Generator.load_adapter`."""
        ...

    def num_parameters(self) -> int:
        """:meth:`Generator.num_parameters`."""
        ...


@runtime_checkable
class AddedTokens(Protocol):
    """A generator whose model carries tokens it added to a pretrained vocabulary (see the module
    docstring)."""

    def added_token_ids(self) -> list[int]:
        """Ids of the added tokens (empty when none were added): the embedding rows an adapter
        trains and saves, on top of its low-rank matrices."""
        ...


__all__ = ["AddedTokens", "EncodedPrompts", "PromptEncoder", "TrainableGenerator", "prompt_matrix"]
