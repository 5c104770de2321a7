"""Speciation (paper, section 3.3): genomes grouped by compatibility distance to each species'
representative, explicit fitness sharing, offspring quotas and removal of stagnant species."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.neat.genome import GenePool, Genome


@dataclass
class Species:
    key: int
    representative: Genome
    members: list[int] = field(default_factory=list)
    """Indices into the population's genome list."""
    created: int = 0
    best_fitness: float = -np.inf
    last_improved: int = 0

    def to_data(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "representative": self.representative.to_data(),
            "members": list(self.members),
            "created": self.created,
            "best_fitness": float(self.best_fitness),
            "last_improved": self.last_improved,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Species:
        return cls(
            key=int(data["key"]),
            representative=Genome.from_data(data["representative"]),
            members=[int(m) for m in data["members"]],
            created=int(data["created"]),
            best_fitness=float(data["best_fitness"]),
            last_improved=int(data["last_improved"]),
        )


def speciate(
    genomes: list[Genome],
    species: list[Species],
    *,
    threshold: float,
    coefficients: tuple[float, float, float],
    generation: int,
    next_key: int,
) -> tuple[list[Species], int]:
    """Assign every genome to the first species whose representative is within `threshold`, or found a
    new one. Old species first pick as new representative their closest genome (as neat-python does),
    so a lineage keeps its identity; empty species disappear. Returns (species, next free key)."""
    pool = GenePool(genomes)
    unassigned = np.ones(len(genomes), dtype=bool)
    kept: list[Species] = []
    rows: list[np.ndarray] = []  # distances from each kept species' representative to every genome
    for s in species:
        if not unassigned.any():
            break
        distances = np.where(unassigned, pool.distances(s.representative, *coefficients), np.inf)
        best = int(np.argmin(distances))
        if distances[best] >= threshold:
            continue
        s.representative, s.members = genomes[best], [best]
        unassigned[best] = False
        kept.append(s)
        rows.append(pool.distances(genomes[best], *coefficients))
    for i in np.flatnonzero(unassigned):
        for s, row in zip(kept, rows, strict=False):
            if row[i] < threshold:
                s.members.append(int(i))
                break
        else:
            kept.append(Species(next_key, genomes[i], [int(i)], created=generation, last_improved=generation))
            rows.append(pool.distances(genomes[i], *coefficients))
            next_key += 1
    return kept, next_key


def update_stagnation(
    species: list[Species], fitness: np.ndarray, generation: int, max_stagnation: int, keep: int
) -> list[Species]:
    """Record each species' best fitness; drop those that have not improved for `max_stagnation`
    generations, except the `keep` best species (so the population never dies out)."""
    for s in species:
        best = float(fitness[s.members].max())
        if best > s.best_fitness:
            s.best_fitness, s.last_improved = best, generation
    ranked = sorted(species, key=lambda s: s.best_fitness, reverse=True)
    protected = {s.key for s in ranked[:keep]}
    return [s for s in species if s.key in protected or generation - s.last_improved < max_stagnation]


def offspring_counts(species: list[Species], fitness: np.ndarray, population_size: int, min_size: int) -> list[int]:
    """Explicit fitness sharing: a genome's adjusted fitness is its fitness over its species' size, so
    a species' total adjusted fitness is its mean fitness; quotas are proportional to that total
    (fitness shifted to start at 0, as neat-python normalises it) and sum to `population_size`."""
    low, high = float(fitness.min()), float(fitness.max())
    span = max(high - low, 1e-9)
    shared = np.array([np.mean((fitness[s.members] - low) / span) for s in species])
    if shared.sum() <= 0:
        shared = np.ones(len(species))
    raw = shared / shared.sum() * population_size
    counts = np.maximum(np.floor(raw).astype(int), min_size)
    # Largest remainders fill (or trim) to the exact population size.
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    i = 0
    while counts.sum() != population_size:
        j = order[i % len(order)]
        if counts.sum() < population_size:
            counts[j] += 1
        elif counts[j] > min_size:
            counts[j] -= 1
        elif (counts > min_size).sum() == 0:
            break
        i += 1
    return counts.tolist()
