"""NEAT genomes (Stanley & Miikkulainen 2002, section 3.1): node genes and connection genes with
historical markings, their mutations, crossover aligned on innovation numbers, and the
compatibility distance.

A genome is plain arrays. Node ids follow neat-python's convention: inputs are -1..-n_inputs (they
carry no gene), outputs 0..n_outputs-1, hidden nodes n_outputs and up. Connection gene `i` is
(innovation[i], source[i], target[i], weight[i], enabled[i]), kept sorted by innovation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch


@dataclass
class Genome:
    node_ids: np.ndarray
    """(n_nodes,) int64: output and hidden node ids (inputs have no gene)."""
    biases: np.ndarray
    """(n_nodes,) float64: bias of each node in `node_ids`."""
    innovation: np.ndarray
    """(n_connections,) int64, sorted ascending: historical marking of each connection gene."""
    source: np.ndarray
    """(n_connections,) int64 node id the connection reads from."""
    target: np.ndarray
    """(n_connections,) int64 node id the connection feeds."""
    weight: np.ndarray
    """(n_connections,) float64."""
    enabled: np.ndarray
    """(n_connections,) bool; a disabled gene is inherited but not expressed."""
    fitness: float | None = field(default=None, compare=False)

    def copy(self) -> Genome:
        return Genome(*(a.copy() for a in self.arrays()), fitness=self.fitness)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.node_ids, self.biases, self.innovation, self.source, self.target, self.weight, self.enabled)

    @property
    def n_enabled(self) -> int:
        return int(self.enabled.sum())

    def to_data(self) -> dict[str, Any]:
        names = ("node_ids", "biases", "innovation", "source", "target", "weight", "enabled")
        return {n: torch.from_numpy(a.copy()) for n, a in zip(names, self.arrays(), strict=False)} | {
            "fitness": self.fitness
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Genome:
        names = ("node_ids", "biases", "innovation", "source", "target", "weight", "enabled")
        return cls(*(data[n].numpy().copy() for n in names), fitness=data["fitness"])

    def sorted(self) -> Genome:
        order = np.argsort(self.innovation, kind="stable")
        return replace(
            self,
            innovation=self.innovation[order],
            source=self.source[order],
            target=self.target[order],
            weight=self.weight[order],
            enabled=self.enabled[order],
        )


class InnovationTracker:
    """Hands out innovation numbers and node ids; the same structural mutation within one
    generation gets the same numbers (paper, section 3.2), so identical innovations line up."""

    def __init__(self, next_innovation: int, next_node: int):
        self.next_innovation = next_innovation
        self.next_node = next_node
        self.new_connections: dict[tuple[int, int], int] = {}
        self.new_splits: dict[int, tuple[int, int, int]] = {}

    def start_generation(self) -> None:
        self.new_connections.clear()
        self.new_splits.clear()

    def connection(self, source: int, target: int) -> int:
        key = (source, target)
        if key not in self.new_connections:
            self.new_connections[key] = self.next_innovation
            self.next_innovation += 1
        return self.new_connections[key]

    def split(self, innovation: int) -> tuple[int, int, int]:
        """(new node id, innovation of the link into it, innovation of the link out of it)."""
        if innovation not in self.new_splits:
            self.new_splits[innovation] = (self.next_node, self.next_innovation, self.next_innovation + 1)
            self.next_node += 1
            self.next_innovation += 2
        return self.new_splits[innovation]

    def state(self) -> dict[str, int]:
        return {"next_innovation": self.next_innovation, "next_node": self.next_node}


def initial_genome(n_inputs: int, n_outputs: int, rng: np.random.Generator, weight_std: float = 1.0) -> Genome:
    """The paper's minimal start: every input wired to every output; innovation = i * n_outputs + o
    so all initial genomes share their markings."""
    sources = -1 - np.repeat(np.arange(n_inputs), n_outputs)
    targets = np.tile(np.arange(n_outputs), n_inputs)
    n = n_inputs * n_outputs
    return Genome(
        node_ids=np.arange(n_outputs, dtype=np.int64),
        biases=rng.normal(0.0, weight_std, n_outputs),
        innovation=np.arange(n, dtype=np.int64),
        source=sources.astype(np.int64),
        target=targets.astype(np.int64),
        weight=rng.normal(0.0, weight_std, n),
        enabled=np.ones(n, dtype=bool),
    )


def mutate_weights(
    genome: Genome, rng: np.random.Generator, *, power: float, replace_rate: float, limit: float
) -> None:
    """Perturb every weight and bias by N(0, power), or (with `replace_rate`) draw it anew from N(0, 1)."""
    for values in (genome.weight, genome.biases):
        fresh = rng.random(values.shape) < replace_rate
        values += rng.normal(0.0, power, values.shape)
        values[fresh] = rng.normal(0.0, 1.0, int(fresh.sum()))
        np.clip(values, -limit, limit, out=values)


def creates_cycle(genome: Genome, source: int, target: int) -> bool:
    """Would source -> target close a loop? Follows every gene, disabled ones included, because a
    disabled gene can be re-enabled later."""
    if source == target:
        return True
    seen, frontier = {target}, [target]
    while frontier:
        node = frontier.pop()
        for nxt in genome.target[genome.source == node]:
            if nxt == source:
                return True
            if nxt not in seen:
                seen.add(int(nxt))
                frontier.append(int(nxt))
    return False


def add_connection(
    genome: Genome,
    n_inputs: int,
    tracker: InnovationTracker,
    rng: np.random.Generator,
    *,
    feed_forward: bool = True,
    attempts: int = 20,
) -> Genome:
    """Link two unconnected nodes with a N(0, 1) weight; an existing disabled link is re-enabled instead."""
    sources = np.concatenate([-1 - np.arange(n_inputs), genome.node_ids])
    for _ in range(attempts):
        src, dst = int(rng.choice(sources)), int(rng.choice(genome.node_ids))
        existing = np.flatnonzero((genome.source == src) & (genome.target == dst))
        if existing.size:
            if not genome.enabled[existing[0]]:
                out = genome.copy()
                out.enabled[existing[0]] = True
                return out
            continue
        if feed_forward and creates_cycle(genome, src, dst):
            continue
        return _append_connections(genome, [(tracker.connection(src, dst), src, dst, rng.normal(0.0, 1.0))])
    return genome


def add_node(genome: Genome, tracker: InnovationTracker, rng: np.random.Generator) -> Genome:
    """Split an enabled connection a -> b into a -> new -> b: the old gene is disabled, the link in
    gets weight 1 and the link out keeps the old weight, so the network's function barely changes."""
    candidates = np.flatnonzero(genome.enabled)
    if candidates.size == 0:
        return genome
    i = int(rng.choice(candidates))
    node, innov_in, innov_out = tracker.split(int(genome.innovation[i]))
    if node in genome.node_ids:  # this split was inherited already; a fresh node keeps ids unique
        node, innov_in, innov_out = tracker.next_node, tracker.next_innovation, tracker.next_innovation + 1
        tracker.next_node += 1
        tracker.next_innovation += 2
    out = _append_connections(
        genome,
        [
            (innov_in, int(genome.source[i]), node, 1.0),
            (innov_out, node, int(genome.target[i]), float(genome.weight[i])),
        ],
    )
    out.enabled[np.searchsorted(out.innovation, genome.innovation[i])] = False
    out.node_ids = np.append(out.node_ids, node)
    out.biases = np.append(out.biases, 0.0)
    return out


def toggle_enabled(genome: Genome, rng: np.random.Generator) -> Genome:
    """Flip one gene's enabled flag (the paper's enable/disable mutation)."""
    if genome.innovation.size == 0:
        return genome
    out = genome.copy()
    i = int(rng.integers(out.innovation.size))
    out.enabled[i] = not out.enabled[i]
    return out


def _append_connections(genome: Genome, genes: list[tuple[int, int, int, float]]) -> Genome:
    innov, src, dst, w = (np.array(col) for col in zip(*genes, strict=False))
    return Genome(
        node_ids=genome.node_ids.copy(),
        biases=genome.biases.copy(),
        innovation=np.concatenate([genome.innovation, innov.astype(np.int64)]),
        source=np.concatenate([genome.source, src.astype(np.int64)]),
        target=np.concatenate([genome.target, dst.astype(np.int64)]),
        weight=np.concatenate([genome.weight, w.astype(np.float64)]),
        enabled=np.concatenate([genome.enabled, np.ones(len(genes), dtype=bool)]),
    ).sorted()


def crossover(fitter: Genome, other: Genome, rng: np.random.Generator, disabled_stays: float = 0.75) -> Genome:
    """Child of two parents (paper, section 3.2): matching genes from either parent at random,
    disjoint and excess genes from the fitter one; a gene disabled in either parent stays disabled
    with probability `disabled_stays`."""
    child = fitter.copy()
    child.fitness = None
    _, mine, theirs = np.intersect1d(fitter.innovation, other.innovation, assume_unique=True, return_indices=True)
    take_other = rng.random(mine.size) < 0.5
    child.weight[mine[take_other]] = other.weight[theirs[take_other]]
    either_disabled = ~fitter.enabled[mine] | ~other.enabled[theirs]
    child.enabled[mine] = ~(either_disabled & (rng.random(mine.size) < disabled_stays))
    _, mine_n, theirs_n = np.intersect1d(fitter.node_ids, other.node_ids, assume_unique=True, return_indices=True)
    take_other = rng.random(mine_n.size) < 0.5
    child.biases[mine_n[take_other]] = other.biases[theirs_n[take_other]]
    return child


def compatibility_distance(a: Genome, b: Genome, c1: float = 1.0, c2: float = 1.0, c3: float = 0.4) -> float:
    """delta = c1 * E / N + c2 * D / N + c3 * W (paper, eq. 1): E excess and D disjoint genes, W the
    mean weight difference of matching genes, N the larger genome's gene count (1 below 20 genes,
    as the paper allows for small genomes)."""
    if a.innovation.size == 0 and b.innovation.size == 0:
        return 0.0
    common, ia, ib = np.intersect1d(a.innovation, b.innovation, assume_unique=True, return_indices=True)
    cutoff = min(a.innovation.max(initial=-1), b.innovation.max(initial=-1))
    unmatched = np.concatenate([np.delete(a.innovation, ia), np.delete(b.innovation, ib)])
    excess = int((unmatched > cutoff).sum())
    disjoint = unmatched.size - excess
    mean_diff = float(np.abs(a.weight[ia] - b.weight[ib]).mean()) if common.size else 0.0
    n = max(a.innovation.size, b.innovation.size)
    n = 1 if n < 20 else n
    return (c1 * excess + c2 * disjoint) / n + c3 * mean_diff


class GenePool:
    """The connection genes of many genomes concatenated, for distances from one genome to all of them at once."""

    def __init__(self, genomes: list[Genome]):
        self.size = len(genomes)
        self.innovation = np.concatenate([g.innovation for g in genomes])
        self.weight = np.concatenate([g.weight for g in genomes])
        self.owner = np.repeat(np.arange(self.size), [g.innovation.size for g in genomes])
        self.lengths = np.bincount(self.owner, minlength=self.size)
        self.max_innovation = np.array([g.innovation.max(initial=-1) for g in genomes])

    def distances(self, a: Genome, c1: float = 1.0, c2: float = 1.0, c3: float = 0.4) -> np.ndarray:
        """(n_genomes,) `compatibility_distance(a, genome)` for every genome of the pool."""
        pos = np.searchsorted(a.innovation, self.innovation).clip(max=max(a.innovation.size - 1, 0))
        matched = a.innovation[pos] == self.innovation if a.innovation.size else np.zeros(self.owner.size, bool)
        n_matched = np.bincount(self.owner[matched], minlength=self.size)
        diff = np.bincount(self.owner[matched], np.abs(self.weight[matched] - a.weight[pos[matched]]), self.size)
        mean_diff = np.divide(diff, n_matched, out=np.zeros(self.size), where=n_matched > 0)
        a_max = a.innovation.max(initial=-1)
        excess_here = np.bincount(self.owner[self.innovation > a_max], minlength=self.size)
        excess_there = a.innovation.size - np.searchsorted(a.innovation, self.max_innovation, side="right")
        excess = excess_here + excess_there
        disjoint = (self.lengths - n_matched) + (a.innovation.size - n_matched) - excess
        n = np.maximum(self.lengths, a.innovation.size)
        n = np.where(n < 20, 1, n)
        return (c1 * excess + c2 * disjoint) / n + c3 * mean_diff
