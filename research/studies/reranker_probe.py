"""Probe: can a small causal LM re-rank counting candidates better than the counting model itself?

This is the experiment behind the next design step of the learned arms (retrieve-then-rerank, as
in LlamaRec): for every transition, the ``markov-backoff`` scorer of the backtest proposes its top
``--slots`` clusters as candidates; a randomly initialised Llama-architecture model (``transformers``)
reads a prompt with the context and, per candidate slot, the candidate's cluster token plus
bucketed evidence tokens (its share of the pair's, the last cluster's and the first cluster's
successors, its popularity share and its raw pair count), all as of the start of the
transition's day; it answers with a *slot* token. Each prompt position carries several tokens
whose embeddings are summed (as BERT sums token, segment and position embeddings), so the
prompt has one position per slot. Training and evaluation prompts are built the same way, from
strictly earlier data (no train/serve skew).

It prints, on the same evaluation rows, HR@1 and HR@5 of the counting prior (the candidates in
their prior order) and of the re-ranked list, and writes them as JSON with ``--json``::

    python research/studies/reranker_probe.py --train 2000-08-01:2000-11-01 \
        --eval 2000-11-01:2001-01-01 --epochs 6

It uses only the public data layer and the backtest's counting tables; nothing here is used by
the library.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, date, datetime

import numpy as np
import torch

from hybridrec.data import load_prepared
from hybridrec.estimators.counting import CountingConfig, CountTables, counting_scores, top_k

DAY = 86400
SHARE_EDGES = np.array([0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45])
COUNT_EDGES = np.array([1, 2, 4, 8, 16, 32, 64])
SUPPORT_EDGES = np.array([1, 3, 10, 30, 100, 300, 1000])


def _ts(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC).timestamp())


def _share_bucket(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    share = counts / np.maximum(totals, 1e-12)
    return np.where(counts > 0, np.searchsorted(SHARE_EDGES, share, side="right") + 1, 0)


def candidate_features(transitions, lo: int, hi: int, slots: int, config: CountingConfig):  # type: ignore[no-untyped-def]
    """Day by day over timestamps ``[lo, hi)``: candidates (in prior order) and evidence buckets,
    from the counts of everything before each day. Returns ``(contexts, truth, cand, feats)``."""
    tables = CountTables(transitions)
    ts = transitions.ts
    rows, cands, feats = [], [], []
    for day in range(lo, hi, DAY):
        tables.advance(day)
        a, b = np.searchsorted(ts, [day, day + DAY])
        if b == a:
            continue
        ctx = np.stack([transitions.c1[a:b], transitions.c2[a:b]], axis=1).astype(np.int64)
        components = tables.components(ctx)
        cand = top_k(*counting_scores(config, components), ctx, slots)
        counts, p_last, p_skip, p_pop, _ = components
        pair_counts = np.take_along_axis(counts, cand, axis=1)
        pair_total = counts.sum(axis=1)
        ones = np.ones((b - a, 1))
        feats.append(np.stack([
            _share_bucket(pair_counts, pair_total[:, None]),
            _share_bucket(np.take_along_axis(p_last, cand, axis=1), ones),
            _share_bucket(np.take_along_axis(p_skip, cand, axis=1), ones),
            _share_bucket(p_pop[cand], ones),
            np.searchsorted(COUNT_EDGES, pair_counts, side="right"),
            np.repeat(np.searchsorted(SUPPORT_EDGES, pair_total, side="right")[:, None], slots, 1),
        ], axis=2))
        rows.append(np.arange(a, b))
        cands.append(cand)
    idx = np.concatenate(rows)
    ctx = np.stack([transitions.c1[idx], transitions.c2[idx]], axis=1).astype(np.int64)
    return ctx, transitions.c3[idx].astype(np.int64), np.concatenate(cands), np.concatenate(feats)


class Prompts:
    """Summed-token prompts: position 0..1 the context, 2..2+S the slots, last the answer cue."""

    def __init__(self, n_clusters: int, slots: int) -> None:
        self.n, self.slots = n_clusters, slots
        sizes = {"share": 12 * 4, "count": 8, "support": 8, "slot": slots, "misc": 4}
        self.base: dict[str, int] = {}
        at = n_clusters
        for name, size in sizes.items():
            self.base[name] = at
            at += size
        self.vocab = at
        self.none, self.first, self.second, self.ans = (self.base["misc"] + i for i in range(4))

    def build(self, ctx: np.ndarray, cand: np.ndarray, feats: np.ndarray) -> torch.Tensor:
        m, s = cand.shape
        x = np.full((m, s + 3, 8), self.none, dtype=np.int64)
        x[:, 0, 0], x[:, 0, 1] = ctx[:, 0], self.first
        x[:, 1, 0], x[:, 1, 1] = ctx[:, 1], self.second
        body = x[:, 2 : 2 + s]
        body[..., 0] = cand
        body[..., 1] = self.base["slot"] + np.arange(s)[None, :]
        for j in range(4):
            body[..., 2 + j] = self.base["share"] + 12 * j + feats[..., j]
        body[..., 6] = self.base["count"] + feats[..., 4]
        body[..., 7] = self.base["support"] + feats[..., 5]
        x[:, -1, 0] = self.ans
        return torch.from_numpy(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--train", default="2000-08-01:2000-11-01", help="training days FROM:TO")
    ap.add_argument("--eval", default="2000-11-01:2001-01-01", help="evaluation days FROM:TO")
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-sample", type=int, default=60_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    transitions = load_prepared(args.dataset).transitions
    # markov-backoff's defaults (chosen by markov-best's validation before the study window).
    prior = CountingConfig(kind="backoff", alpha=128.0, w_last=0.7, w_skip=0.3, w_pop=0.0)
    spans = {k: tuple(_ts(d) for d in v.split(":")) for k, v in (("train", args.train), ("eval", args.eval))}
    prompts = Prompts(transitions.n_clusters, args.slots)
    data = {k: candidate_features(transitions, lo, hi, args.slots, prior) for k, (lo, hi) in spans.items()}

    ctx, truth, cand, feats = data["train"]
    inside = (cand == truth[:, None]).any(axis=1)
    x_train = prompts.build(ctx[inside], cand[inside], feats[inside])
    y_train = torch.from_numpy((cand[inside] == truth[inside, None]).argmax(axis=1))

    config = LlamaConfig(vocab_size=prompts.vocab, hidden_size=args.hidden, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=2 * args.hidden,
                         max_position_embeddings=64, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    slot0 = prompts.base["slot"]

    def slot_logits(x: torch.Tensor) -> torch.Tensor:
        hidden = model.model(inputs_embeds=model.model.embed_tokens(x).sum(dim=2)).last_hidden_state
        return model.lm_head(hidden[:, -1])[:, slot0 : slot0 + args.slots]

    batch = 256
    steps = max(1, int(args.epochs * len(y_train) / batch))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    for _ in range(steps):
        pick = torch.from_numpy(rng.integers(0, len(y_train), batch))
        loss = torch.nn.functional.cross_entropy(slot_logits(x_train[pick]), y_train[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    train_seconds = time.perf_counter() - t0

    ctx, truth, cand, feats = data["eval"]
    keep = rng.choice(len(truth), min(args.eval_sample, len(truth)), replace=False)
    ctx, truth, cand, feats = ctx[keep], truth[keep], cand[keep], feats[keep]
    model.eval()
    with torch.no_grad():
        order = np.concatenate([
            slot_logits(prompts.build(ctx[i : i + 4096], cand[i : i + 4096], feats[i : i + 4096]))
            .argsort(dim=1, descending=True).numpy()
            for i in range(0, len(truth), 4096)
        ])
    reranked = np.take_along_axis(cand, order, axis=1)

    def hr(lists: np.ndarray, k: int) -> float:
        return float((lists[:, :k] == truth[:, None]).any(axis=1).mean())

    result = {
        "train": args.train, "eval": args.eval, "train_examples": len(y_train),
        "eval_rows": len(truth), "slots": args.slots, "epochs": args.epochs, "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "prior": {"hr@1": hr(cand, 1), "hr@5": hr(cand, 5)},
        "reranked": {"hr@1": hr(reranked, 1), "hr@5": hr(reranked, 5)},
        "candidate_recall": hr(cand, args.slots),
    }
    print(f"{'':10}{'HR@1':>8}{'HR@5':>8}   ({result['eval_rows']} evaluation rows, "
          f"{result['train_examples']} training examples)")
    for name in ("prior", "reranked"):
        print(f"{name:10}{result[name]['hr@1']:8.4f}{result[name]['hr@5']:8.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
