"""Cross-device negatives: with ``gather_across_devices`` each query must still be scored against its own
positive and hard negatives after the all-gather.

Two CPU processes (gloo) each hold ``B`` queries, positives and ``N`` hard negatives cut from one global
batch. Each rank runs sentence-transformers' loss exactly as ``xdr train`` builds it (``make_loss``) on
leaf embeddings, records the score matrix the loss used (through its similarity function) and saves the
loss and the gradients that reach its local embeddings. The parent process then checks them against a
single-process computation over the concatenated global batch:

- the score matrix of rank ``r`` is rows ``r·B .. r·B+B-1`` of the global one, columns in the global
  layout ``[all positives | all negative_1 | .. ]``, so the hard negatives of global query ``i`` sit in
  columns ``k·W·B + i``;
- the loss equals cross-entropy with targets ``r·B + arange(B)`` (the offset); the deliberately broken
  variant without the offset must NOT match (it coincides on rank 0 only, so rank 1 is checked);
- the gradients: the all-gather's backward sums every rank's contribution, and DDP then averages
  parameter gradients over ranks, so local embedding gradients divided by ``W`` must equal the gradient
  of the global mean loss.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
B = 3  # queries per rank
N = 2  # hard negatives per query
DIM = 8
SCALES = {"dot": 1.0, "cos": 20.0}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def global_batch(structured: bool) -> list[torch.Tensor]:
    """Queries, positives, negatives_1..N of the whole (world) batch, identical in every process.

    ``structured``: query ``i`` is ``e_i``; its positive ``e_i`` scores 1, its own hard negatives
    ``0.5·e_i`` and ``0.25·e_i`` score less but more than everything else (0), so the argmax of every row
    is the positive's column and the runner-up its first hard negative.
    """
    n = WORLD * B
    if structured:
        eye = torch.eye(n, DIM)
        return [eye.clone(), eye.clone(), *(eye * 0.5 ** (k + 1) for k in range(N))]
    g = torch.Generator().manual_seed(1234)
    return [torch.randn(n, DIM, generator=g) for _ in range(2 + N)]


def reference(similarity: str, structured: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Single process over the concatenated batch: logits, global mean loss, its embedding gradients."""
    from xdr.train.dual import similarity_function

    leaves = [t.clone().requires_grad_(True) for t in global_batch(structured)]
    q, docs = leaves[0], torch.cat(leaves[1:])
    logits = similarity_function(similarity)(q, docs) * SCALES[similarity]
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(WORLD * B))
    loss.backward()
    return logits.detach(), loss.detach(), [t.grad for t in leaves]


CASES = [(loss, sim, False) for loss in ("mnrl", "cached-mnrl") for sim in ("dot", "cos")] + [("mnrl", "dot", True)]


def _run_case(rank: int, loss_name: str, similarity: str, structured: bool) -> dict[str, object]:
    from xdr.train.dual import make_loss, similarity_function

    recorded: list[torch.Tensor] = []
    fn = similarity_function(similarity)

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        scores = fn(a, b)
        recorded.append(scores.detach().clone())
        return scores

    model = torch.nn.Sequential(torch.nn.Identity())  # the losses only embed through it; we pass embeddings
    loss_fn = make_loss(model, loss=loss_name, similarity=similarity, scale=SCALES[similarity],
                        mini_batch_size=2, gather_across_devices=True)
    loss_fn.similarity_fct = recording  # the cached loss delegates this to the MNRL it wraps
    local = [t[rank * B:(rank + 1) * B].clone().requires_grad_(True) for t in global_batch(structured)]
    if loss_name == "mnrl":
        loss = loss_fn.compute_loss_from_embeddings(local, None)
    else:  # the cached loss's loss stage; its mini-batches of 2 split the rank's 3 rows as 2 + 1
        loss = loss_fn.calculate_loss([[t] for t in local], None)
    loss.backward()
    return {"loss": loss.detach(), "scores": torch.cat(recorded), "grads": [t.grad for t in local]}


def _worker(rank: int, port: int, out: str) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {case: _run_case(rank, *case) for case in CASES}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, bool], list[dict]]:
    """Every case's per-rank results, from one spawn of two gloo processes (spawning costs seconds)."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    per_rank = [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]
    return {case: [per_rank[r][case] for r in range(WORLD)] for case in CASES}


def correct_labels(rank: int, batch: int) -> torch.Tensor:
    return rank * batch + torch.arange(batch)


def broken_labels(rank: int, batch: int) -> torch.Tensor:
    return torch.arange(batch)  # the bug peers shipped: local positions used as global columns


@pytest.mark.parametrize("loss_name", ["mnrl", "cached-mnrl"])
@pytest.mark.parametrize("similarity", ["dot", "cos"])
def test_gathered_loss_equals_single_process(ranks: dict, loss_name: str, similarity: str) -> None:
    results = ranks[(loss_name, similarity, False)]
    ref_logits, ref_loss, ref_grads = reference(similarity, structured=False)
    scale = SCALES[similarity]
    for r, got in enumerate(results):
        rows = slice(r * B, (r + 1) * B)
        # the score matrix the loss used is this rank's rows of the global one, in the global column layout
        torch.testing.assert_close(got["scores"] * scale, ref_logits[rows])
        # its loss is the global cross-entropy restricted to its rows, targets offset by rank·B
        expected = torch.nn.functional.cross_entropy(ref_logits[rows], correct_labels(r, B))
        torch.testing.assert_close(got["loss"], expected)
        # DDP averages over ranks; the gather's backward already summed every rank's share into these
        for k, grad in enumerate(got["grads"]):
            torch.testing.assert_close(grad / WORLD, ref_grads[k][rows])
    torch.testing.assert_close(sum(g["loss"] for g in results) / WORLD, ref_loss)


@pytest.mark.parametrize(
    ("labels", "should_match"), [(correct_labels, True), (broken_labels, False)], ids=["offset", "no-offset"]
)
def test_labels_are_global_indices(
    ranks: dict, labels: Callable[[int, int], torch.Tensor], should_match: bool
) -> None:
    """On the structured batch every row's best column is the global index of its positive and the
    runner-up its own first hard negative; the loss agrees only with offset targets."""
    for r, got in enumerate(ranks[("mnrl", "dot", True)]):
        scores = got["scores"]
        global_rows = correct_labels(r, B)
        assert scores.shape == (B, WORLD * B * (1 + N))
        top2 = scores.topk(2, dim=1).indices
        assert torch.equal(top2[:, 0], global_rows)  # positive of global query i is column i
        assert torch.equal(top2[:, 1], WORLD * B + global_rows)  # its negative_1 is column W·B + i
        for k in range(N):  # every own hard negative scores 0.5^(k+1), nothing else of the row does
            assert torch.allclose(scores[torch.arange(B), (k + 1) * WORLD * B + global_rows],
                                  torch.full((B,), 0.5 ** (k + 1)))
        ce = torch.nn.functional.cross_entropy(scores, labels(r, B))
        matches = bool(torch.allclose(ce, got["loss"]))
        if r == 0:
            assert matches  # offset 0: both variants agree on the first rank
        else:
            assert matches is should_match
