"""One NEAT population: evaluate (`genomes`), then `tell` the fitnesses to make the next generation
by speciation, fitness sharing, elitism, crossover and mutation. All randomness comes from one
numpy Generator; the whole state converts to plain data for checkpoints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agents.neat.config import NeatConfig
from agents.neat.genome import (
    Genome,
    InnovationTracker,
    add_connection,
    add_node,
    crossover,
    initial_genome,
    mutate_weights,
    toggle_enabled,
)
from agents.neat.species import Species, offspring_counts, speciate, update_stagnation
from core.seeding import generator_state, set_generator_state


class Population:
    def __init__(self, settings: NeatConfig, n_inputs: int, n_outputs: int, rng: np.random.Generator):
        self.settings, self.n_inputs, self.n_outputs, self.rng = settings, n_inputs, n_outputs, rng
        self.genomes = [initial_genome(n_inputs, n_outputs, rng) for _ in range(settings.population_size)]
        self.tracker = InnovationTracker(next_innovation=n_inputs * n_outputs, next_node=n_outputs)
        self.generation = 0
        self.species: list[Species] = []
        self.next_species_key = 0
        self.champion: Genome | None = None
        self._speciate()

    @property
    def coefficients(self) -> tuple[float, float, float]:
        return (self.settings.c1, self.settings.c2, self.settings.c3)

    def _speciate(self) -> None:
        self.species, self.next_species_key = speciate(
            self.genomes,
            self.species,
            threshold=self.settings.compatibility_threshold,
            coefficients=self.coefficients,
            generation=self.generation,
            next_key=self.next_species_key,
        )

    def tell(self, fitness: np.ndarray, best_score: float | None = None) -> bool:
        """Take the (n_genomes,) fitnesses of `genomes`, breed the next generation. The generation's
        fittest genome becomes the champion when its score, `best_score` if given (a re-evaluation on
        more episodes) else its fitness, beats the champion's. Returns True when it did."""
        fitness = np.asarray(fitness, dtype=np.float64)
        for genome, f in zip(self.genomes, fitness, strict=False):
            genome.fitness = float(f)
        best = int(np.argmax(fitness))
        score = float(fitness[best] if best_score is None else best_score)
        improved = self.champion is None or score > self.champion.fitness
        if improved:
            self.champion = self.genomes[best].copy()
            self.champion.fitness = score
        s = self.settings
        self.species = update_stagnation(self.species, fitness, self.generation, s.max_stagnation, s.species_kept)
        # Two children per species keep small species alive (neat-python's min_species_size), unless
        # there are so many species that this would overflow the population.
        min_size = 2 if 2 * len(self.species) <= s.population_size else 0
        counts = offspring_counts(self.species, fitness, s.population_size, min_size=min_size)
        self.tracker.start_generation()
        children: list[Genome] = []
        for species, n in zip(self.species, counts, strict=False):
            children.extend(self._breed(species, n, fitness))
        self.genomes = children
        self.generation += 1
        self._speciate()
        return improved

    def _breed(self, species: Species, n: int, fitness: np.ndarray) -> list[Genome]:
        """`n` children of one species: its champion unchanged (if the species is big enough), the rest
        from its fittest `survival_threshold` by crossover or cloning, then mutation."""
        s = self.settings
        ranked = sorted(species.members, key=lambda i: -fitness[i])
        children = []
        if n > 0 and len(ranked) >= s.elitism_min_species_size:
            children.append(self.genomes[ranked[0]].copy())
        pool = ranked[: max(2, math.ceil(s.survival_threshold * len(ranked)))]
        everyone = [i for sp in self.species for i in sp.members]
        while len(children) < n:
            a = int(self.rng.choice(pool))
            if self.rng.random() < s.crossover_rate:
                b = int(self.rng.choice(everyone if self.rng.random() < s.interspecies_mating_rate else pool))
                fitter, other = (a, b) if fitness[a] >= fitness[b] else (b, a)
                child = crossover(self.genomes[fitter], self.genomes[other], self.rng, s.disabled_stays_disabled)
            else:
                child = self.genomes[a].copy()
            child.fitness = None
            children.append(self.mutate(child))
        return children

    def mutate(self, genome: Genome) -> Genome:
        s, rng = self.settings, self.rng
        if rng.random() < s.weight_mutation_rate:
            mutate_weights(
                genome, rng, power=s.weight_perturb_power, replace_rate=s.weight_replace_rate, limit=s.weight_limit
            )
        if rng.random() < s.add_node_rate:
            genome = add_node(genome, self.tracker, rng)
        if rng.random() < s.add_connection_rate:
            genome = add_connection(genome, self.n_inputs, self.tracker, rng, feed_forward=not s.recurrent)
        if rng.random() < s.toggle_enabled_rate:
            genome = toggle_enabled(genome, rng)
        return genome

    # Checkpoints ------------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        return {
            "genomes": [g.to_data() for g in self.genomes],
            "species": [sp.to_data() for sp in self.species],
            "next_species_key": self.next_species_key,
            "tracker": self.tracker.state(),
            "generation": self.generation,
            "champion": None if self.champion is None else self.champion.to_data(),
            "rng": generator_state(self.rng),
        }

    def load_data(self, data: dict[str, Any]) -> None:
        self.genomes = [Genome.from_data(g) for g in data["genomes"]]
        self.species = [Species.from_data(sp) for sp in data["species"]]
        self.next_species_key = int(data["next_species_key"])
        self.tracker = InnovationTracker(**{k: int(v) for k, v in data["tracker"].items()})
        self.generation = int(data["generation"])
        self.champion = None if data["champion"] is None else Genome.from_data(data["champion"])
        set_generator_state(self.rng, data["rng"])
